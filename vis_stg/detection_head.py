"""CenterNet detection head on the fused feature maps F̂_t (§3.3, eq. (3)).

Per FPN level (weights shared over levels) three branches predict the class heat map (K channels), the box
size and the sub-cell centre offset. Sizes are in cells of the level (i.e. pixels / stride) so one head
serves every level; objects are assigned to levels by size (:mod:`.targets`). Inference keeps the 3×3
local maxima of the heat maps (CenterNet's max-pool NMS), the top-k over all levels, and removes duplicates
an object leaves on neighbouring levels with class-aware box NMS, all in fixed-size tensors (no host sync).

Shapes: B images, K classes, per level (B, K, H_l, W_l) heat maps, (B, 2, H_l, W_l) sizes / offsets; D
detection slots (padded, ``valid`` mask) after inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode
from torch import nn

from .losses import graph_anchor, heatmap_focal_loss
from .sync_free import EXACT, greedy_nms_fixed_point, stable_compact
from .targets import CenterTargets, gather_at_cells

__all__ = ["conv_branch", "CenterNetHead", "DetectionLossSettings", "Detections"]


def conv_branch(
    in_channels: int, conv_dim: int, num_convs: int, out_channels: int, init: str = "normal"
) -> nn.Sequential:
    """``num_convs`` × (3×3 conv + ReLU) then a 1×1 output conv (CenterNet's head layout). Weights start from
    N(0, 0.01) (``init="normal"``, CenterNet / FCOS heads) or Kaiming-uniform (``"kaiming"``, CondInst's mask
    branch); biases from 0."""
    layers: List[nn.Module] = []
    for i in range(num_convs):
        layers += [nn.Conv2d(in_channels if i == 0 else conv_dim, conv_dim, 3, padding=1), nn.ReLU(inplace=True)]
    layers.append(nn.Conv2d(conv_dim if num_convs > 0 else in_channels, out_channels, 1))
    for m in layers:
        if isinstance(m, nn.Conv2d):
            if init == "kaiming":
                nn.init.kaiming_uniform_(m.weight, a=1)
            else:
                nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


@dataclass
class Detections:
    """D detections of one image: ``level`` (D,), ``cells`` (D, 2) integer (x, y) on the level grid,
    ``scores`` (D,), ``classes`` (D,), ``boxes`` (D, 4) XYXY in input pixels; ``valid`` (D,) bool marks the
    real detections when the D slots are a fixed-size padded set (online inference), None = all real.
    ``dropped`` (2,) int64 on the device, for the whole image (not per slot), set by
    :meth:`CenterNetHead.inference`: peaks above the score threshold that did not fit in the top-k
    candidates, and detections kept by NMS that did not fit in the ``max_detections`` slots."""

    level: torch.Tensor
    cells: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    boxes: torch.Tensor
    valid: Optional[torch.Tensor] = None
    dropped: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.scores.numel()

    def __getitem__(self, idx: torch.Tensor) -> Detections:
        return Detections(
            self.level[idx],
            self.cells[idx],
            self.scores[idx],
            self.classes[idx],
            self.boxes[idx],
            None if self.valid is None else self.valid[idx],
            self.dropped,
        )


@dataclass(frozen=True)
class DetectionLossSettings:
    """``DET.*`` of the training loss: gaussian min-overlap of the heat-map targets, focal α / β, λ_size and
    λ_offset of eq. (3), and whether frame k's detections are supervised too (``REF_FRAME_LOSS``)."""

    min_overlap: float = 0.7
    focal_alpha: float = 2.0
    focal_beta: float = 4.0
    size_weight: float = 0.1
    offset_weight: float = 1.0
    ref_frame_loss: bool = False

    @classmethod
    def from_config(cls, cfg: CfgNode) -> DetectionLossSettings:
        d = cfg.MODEL.VIS_STG.DET
        return cls(d.MIN_OVERLAP, d.FOCAL_ALPHA, d.FOCAL_BETA, d.SIZE_WEIGHT, d.OFFSET_WEIGHT, d.REF_FRAME_LOSS)


class CenterNetHead(nn.Module):
    """Heat map / size / offset branches (§3.3). ``forward`` returns three lists with one tensor per level:
    heat-map logits (B, K, H, W), sizes (B, 2, H, W) and offsets (B, 2, H, W)."""

    def __init__(
        self, in_channels: int, num_classes: int, num_convs: int = 1, conv_dim: int = 256, prior_prob: float = 0.1
    ):
        super().__init__()
        self.num_classes = num_classes
        self.heatmap = conv_branch(in_channels, conv_dim, num_convs, num_classes)
        self.size = conv_branch(in_channels, conv_dim, num_convs, 2)
        self.offset = conv_branch(in_channels, conv_dim, num_convs, 2)
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(
        self, features: Sequence[torch.Tensor]
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[torch.Tensor]]:
        return (
            [self.heatmap(f) for f in features],
            [self.size(f) for f in features],
            [self.offset(f) for f in features],
        )

    @staticmethod
    def losses(
        heatmaps: Sequence[torch.Tensor],
        sizes: Sequence[torch.Tensor],
        offsets: Sequence[torch.Tensor],
        targets: CenterTargets,
        alpha: float = 2.0,
        beta: float = 4.0,
    ) -> Dict[str, torch.Tensor]:
        """Eq. (3) terms (unweighted): focal centre loss over all levels, L1 size and offset losses at the
        centre cells; all normalised by the number of objects."""
        num = max(len(targets), 1)
        center = sum(heatmap_focal_loss(h, t, alpha, beta) for h, t in zip(heatmaps, targets.heatmaps)) / num
        pred_size = gather_at_cells(sizes, targets.level, targets.batch_idx, targets.cells)
        pred_offset = gather_at_cells(offsets, targets.level, targets.batch_idx, targets.cells)
        loss_size = F.l1_loss(pred_size, targets.sizes, reduction="sum") / num
        loss_offset = F.l1_loss(pred_offset, targets.offsets, reduction="sum") / num
        if len(targets) == 0:  # no GT object: keep the size / offset branches in the graph (DDP)
            loss_size, loss_offset = loss_size + graph_anchor(*sizes), loss_offset + graph_anchor(*offsets)
        return {"loss_center": center, "loss_size": loss_size, "loss_offset": loss_offset}

    @staticmethod
    @torch.no_grad()
    def inference(
        heatmaps: Sequence[torch.Tensor],
        sizes: Sequence[torch.Tensor],
        offsets: Sequence[torch.Tensor],
        strides: Sequence[int],
        score_thresh: float = 0.05,
        topk: int = 100,
        nms_thresh: float = 0.6,
        max_detections: int = 100,
        nms_iters: int = EXACT,
    ) -> Tuple[Detections, torch.Tensor]:
        """Decode the detections of the first image of the batch (online inference runs one frame), without a
        host sync: 3×3 peaks, top-``topk`` per level then over all levels, boxes decoded per level, scores
        above ``score_thresh``, class-aware greedy NMS (:func:`.sync_free.greedy_nms_fixed_point`,
        ``nms_iters`` fixed-point iterations, :data:`.sync_free.EXACT` = enough for any input) and the best
        ``max_detections``.

        Returns D = min(max_detections, candidates) slots in descending score order, the kept detections
        first; ``valid`` (D,) marks them, ``dropped`` counts what the two caps cut (on the device: read with the
        frame's outputs). Also returns ``converged`` (0-dim bool) of the NMS iterations."""
        level, classes, cells, scores, boxes = [], [], [], [], []
        above = heatmaps[0].new_zeros((), dtype=torch.long)  # peaks above the threshold, all levels and classes
        for lvl, heat in enumerate(heatmaps):
            prob = heat[0].sigmoid()
            peaks = prob * (prob == F.max_pool2d(prob[None], 3, stride=1, padding=1)[0])
            above = above + (peaks > score_thresh).sum()
            s, i = peaks.flatten().topk(min(topk, peaks.numel()))
            h, w = heat.shape[-2:]
            pix = i % (h * w)
            x, y = pix % w, pix // w
            center = (torch.stack([x, y], 1).to(s.dtype) + offsets[lvl][0][:, y, x].t()) * strides[lvl]
            half = sizes[lvl][0][:, y, x].t().clamp(min=0) * strides[lvl] / 2
            level.append(torch.full_like(i, lvl))
            classes.append(i // (h * w))
            cells.append(torch.stack([x, y], 1))
            scores.append(s)
            boxes.append(torch.cat([center - half, center + half], 1))
        scores, order = torch.cat(scores).topk(min(topk, sum(s.numel() for s in scores)))
        level, classes = torch.cat(level)[order], torch.cat(classes)[order]
        cells, boxes = torch.cat(cells)[order], torch.cat(boxes)[order]
        keep = scores > score_thresh
        converged = torch.ones((), dtype=torch.bool, device=scores.device)
        if nms_thresh > 0:
            keep, converged = greedy_nms_fixed_point(boxes, classes, keep, nms_thresh, nms_iters)
        slots, num_kept = stable_compact(keep)
        slots = slots[:max_detections]
        valid = torch.arange(len(slots), device=slots.device) < num_kept
        dropped = torch.stack([(above - len(scores)).clamp(min=0), (num_kept - len(slots)).clamp(min=0)])
        dets = Detections(level[slots], cells[slots], scores[slots], classes[slots], boxes[slots], valid, dropped)
        return dets, converged
