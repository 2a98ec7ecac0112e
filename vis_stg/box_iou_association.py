"""Box-IoU linking: the association of the ``INFERENCE.BASELINE iou`` baseline (plain heads, no graph, warp or
memory) and of ``TRACK.ASSOCIATION box_iou``: a detection is a candidate for a reference instance of its class
when their boxes overlap with IoU >= ``INFERENCE.BASELINE_IOU``; no parameters, no learned cue.

Shapes: N reference instances, D detection slots.
"""

from __future__ import annotations

from typing import Tuple

import torch
from detectron2.config import configurable
from torchvision.ops import box_iou

from .association import ASSOCIATION_REGISTRY, Association, FrameInputs

__all__ = ["BoxIoUAssociation"]


@ASSOCIATION_REGISTRY.register()
class BoxIoUAssociation(Association):
    """(N, 4) reference boxes, (D, 4) detection boxes -> IoU (N, D); candidates: same class, IoU >= ``min_iou``."""

    cue, module_name = "box_iou", "box_iou"

    @configurable
    def __init__(self, min_iou: float = 0.5):
        super().__init__()
        self.min_iou = min_iou

    @classmethod
    def from_config(cls, cfg, dim: int):
        return {"min_iou": cfg.MODEL.VIS_STG.INFERENCE.BASELINE_IOU}

    def pair_scores(self, frame: FrameInputs) -> Tuple[torch.Tensor, torch.Tensor]:
        refs, dets = frame.refs, frame.dets
        iou = box_iou(refs.boxes, dets.boxes)
        return iou, (iou >= self.min_iou) & (refs.classes[:, None] == dets.classes[None, :])
