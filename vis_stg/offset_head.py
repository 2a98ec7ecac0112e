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

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn
from torchvision.ops import box_iou

from .association import ASSOCIATION_REGISTRY, Association, FrameInputs, PairInputs
from .detection_head import conv_branch
from .sync_free import gather_at_cells_static
from .targets import CenterTargets, gather_at_cells

__all__ = ["OffsetHead"]


@ASSOCIATION_REGISTRY.register()
class OffsetHead(Association):
    """Per level [(B, D, H, W) target, (B, D, H, W) previous] -> (B, 2, H, W) displacement in cells; the
    ``offset`` association cue."""

    cue, module_name = "offset", "offset_head"

    @configurable
    def __init__(self, in_channels: int, num_convs: int = 1, conv_dim: int = 256, *, min_iou: float = 0.5):
        """``min_iou``: IoU of the displaced detection box with a reference box for a candidate."""
        super().__init__()
        self.layers = conv_branch(2 * in_channels, conv_dim, num_convs, 2)
        nn.init.zeros_(self.layers[-1].weight)
        self.min_iou = min_iou

    @classmethod
    def from_config(cls, cfg, dim: int):
        c = cfg.MODEL.VIS_STG
        return {
            "in_channels": dim,
            "num_convs": c.TRACK.OFFSET_NUM_CONVS,
            "conv_dim": c.DET.CONV_DIM,
            "min_iou": c.TRACK.OFFSET_MIN_IOU,
        }

    def forward(self, features_t: Sequence[torch.Tensor], features_prev: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        return [self.layers(torch.cat([f, p.to(f.dtype)], dim=1)) for f, p in zip(features_t, features_prev)]

    def training_losses(self, pair: PairInputs) -> Dict[str, torch.Tensor]:
        maps = self(pair.heads_in, pair.feats_k)  # frame k plays frame t-1
        return {"loss_track_offset": self.losses(maps, pair.targets_t, pair.targets_k, pair.level_strides)}

    def frame_maps(
        self, heads_in: Sequence[torch.Tensor], prev_features: Optional[Sequence[torch.Tensor]]
    ) -> Optional[List[torch.Tensor]]:
        return None if prev_features is None else self(heads_in, prev_features)

    def pair_scores(self, frame: FrameInputs) -> Tuple[torch.Tensor, torch.Tensor]:
        """Box IoU of each reference with each detection moved by its displacement (zero without F_{t-1})."""
        dets = frame.dets
        displacement = dets.boxes.new_zeros(len(dets), 2)
        if frame.maps is not None:  # cells of the detection's level -> input pixels
            cells = gather_at_cells_static(frame.maps, dets.level, dets.cells)
            displacement = cells * frame.level_strides[dets.level][:, None]
        return self.match_scores(frame.refs.boxes, dets.boxes, displacement, self.min_iou)

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
