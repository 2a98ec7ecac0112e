"""Box operations on the segmenter's fixed-size padded detections, without host syncs: class-agnostic Fast NMS
on a padded set (YOLACT §3.4), masks cropped to their boxes, and the release's 0/1 box maps on the prototype grid.

Shapes: N boxes (padded), (h, w) the mask grid.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torchvision.ops import box_iou

__all__ = ["crop_masks", "box_grid_masks", "fast_nms_keep"]


def crop_masks(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Zero every mask outside its box. masks: (N, h, w); boxes: (N, 4) XYXY in mask-grid units."""
    h, w = masks.shape[-2:]
    ys = torch.arange(h, device=masks.device, dtype=masks.dtype).view(1, h, 1) + 0.5
    xs = torch.arange(w, device=masks.device, dtype=masks.dtype).view(1, 1, w) + 0.5
    x0, y0, x1, y1 = (boxes[:, i].view(-1, 1, 1).to(masks.dtype) for i in range(4))
    inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    return masks * inside


def box_grid_masks(boxes: torch.Tensor, grid: Tuple[int, int], stride: int) -> torch.Tensor:
    """The release's ``box_to_seg``: 0/1 box maps on a (h, w) grid whose sample x_j = j * (w * stride) / (w - 1)
    (``linspace(0, W, w)``, W = w * stride the input the grid covers; likewise y), 1 where x1 <= x <= x2 and
    y1 <= y <= y2. boxes: (..., 4) XYXY input pixels. Returns (..., h, w) in the boxes' dtype."""
    h, w = grid
    xs = torch.linspace(0.0, float(w * stride), w, device=boxes.device, dtype=boxes.dtype)
    ys = torch.linspace(0.0, float(h * stride), h, device=boxes.device, dtype=boxes.dtype)
    x1, y1, x2, y2 = (boxes[..., i, None, None] for i in range(4))
    inside_x = (x1 <= xs) & (xs <= x2)  # (..., 1, w)
    inside_y = (y1 <= ys[:, None]) & (ys[:, None] <= y2)  # (..., h, 1)
    return (inside_x & inside_y).to(boxes.dtype)


def fast_nms_keep(boxes: torch.Tensor, valid: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """YOLACT's Fast NMS (§3.4 of YOLACT), class-agnostic, on a fixed-size padded set without host syncs.

    boxes: (N, 4) XYXY sorted by decreasing score; valid: (N,) bool (padding / filtered entries neither are
    kept nor suppress others). A valid box is dropped when its IoU with any higher-scoring valid box exceeds
    ``iou_threshold`` (also with boxes that are themselves dropped). Returns keep (N,) bool."""
    iou = box_iou(boxes, boxes).triu_(diagonal=1)
    iou = torch.where(valid[:, None], iou, 0.0)
    if boxes.shape[0] == 0:
        return valid.clone()
    return valid & (iou.max(dim=0).values <= iou_threshold)
