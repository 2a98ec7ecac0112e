"""The "Offset" association of Table 2 (§4.3), following CenterTrack (X. Zhou, V. Koltun, P. Krähenbühl,
"Tracking Objects as Points", ECCV 2020, arXiv:2004.01177): predict each instance's centre displacement to the
previous frame and "use these offsets and IoU to match instances with candidates".

The head reads the heads' input of frame t (F̂_t) concatenated with the plain features of the previous frame
(F_k in training, F_{t-1} online) per FPN level and predicts, at every cell, the displacement (dx, dy) from the
centre of the object centred there to its centre in the previous frame, in cells of the level (the last conv
starts at zero: "no motion"). Training: L1 at the GT centre cells of frame t for the objects that also appear in
frame k (CenterTrack's tracking loss). Test: a detection's box is shifted by its displacement and matched to the
reference instances by box IoU >= ``TRACK.OFFSET_MIN_IOU`` (greedy, one-to-one, within the class, like the other
associations). The displacement is to frame t-1; reference instances from the memory are compared at their last
box (the paper's description stops at frame pairs).

Shapes: B images, D channels, G GT objects, N reference instances, M detection slots.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou

from .detection_head import conv_branch
from .targets import CenterTargets, gather_at_cells

__all__ = ["OffsetHead"]


class OffsetHead(nn.Module):
    """Per level [(B, D, H, W) target, (B, D, H, W) previous] -> (B, 2, H, W) displacement in cells."""

    def __init__(self, in_channels: int, num_convs: int = 1, conv_dim: int = 256):
        super().__init__()
        self.layers = conv_branch(2 * in_channels, conv_dim, num_convs, 2)
        nn.init.zeros_(self.layers[-1].weight)

    def forward(self, features_t: Sequence[torch.Tensor], features_prev: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        return [self.layers(torch.cat([f, p.to(f.dtype)], dim=1)) for f, p in zip(features_t, features_prev)]

    @staticmethod
    def losses(
        offset_maps: Sequence[torch.Tensor],
        targets_t: CenterTargets,
        targets_k: CenterTargets,
        strides: torch.Tensor,
    ) -> torch.Tensor:
        """Mean L1 (in cells of frame t's level) of the displacement of every object of frame t that is also in
        frame k (same image, same track id >= 0). ``strides`` (L,) float. Zero (in the graph) if there is none."""
        anchor = sum(m.sum() for m in offset_maps) * 0.0
        if len(targets_t) == 0 or len(targets_k) == 0:
            return anchor
        same = (
            (targets_t.batch_idx[:, None] == targets_k.batch_idx[None, :])
            & (targets_t.ids[:, None] == targets_k.ids[None, :])
            & (targets_t.ids[:, None] >= 0)
        )  # (G_t, G_k)
        has_prev = same.any(1)
        prev = same.float().argmax(1)
        centre_t = (targets_t.cells.float() + targets_t.offsets) * strides[targets_t.level][:, None]
        centre_k = (targets_k.cells.float() + targets_k.offsets) * strides[targets_k.level][:, None]
        target = (centre_k[prev] - centre_t) / strides[targets_t.level][:, None]  # (G_t, 2) cells of t's level
        pred = gather_at_cells(offset_maps, targets_t.level, targets_t.batch_idx, targets_t.cells)
        per_object = F.l1_loss(pred, target, reduction="none").sum(1)
        return anchor + (per_object * has_prev).sum() / has_prev.sum().clamp(min=1)

    @staticmethod
    def match_scores(
        ref_boxes: torch.Tensor, det_boxes: torch.Tensor, displacement: torch.Tensor, min_iou: float
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N, 4), (M, 4) XYXY and (M, 2) displacement in input pixels -> IoU of each reference box with each
        detection's box moved to the previous frame (N, M), and the candidate mask IoU >= ``min_iou``."""
        shifted = det_boxes + displacement.to(det_boxes.dtype).repeat(1, 2)
        iou = box_iou(ref_boxes, shifted)
        return iou, iou >= min_iou
