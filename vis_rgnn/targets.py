"""Training targets shared by the segmenter and the tracker: ground-truth masks on the prototype grid and the
detection <-> annotation assignment of §3.5."""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from detectron2.structures import Instances
from torchvision.ops import box_iou


def gt_masks_on_grid(instances: Instances, padded_size: Tuple[int, int], stride: int) -> torch.Tensor:
    """Area-averaged ground-truth masks on the prototype grid.

    ``padded_size`` = (Hp, Wp) is the input region the prototype grid covers, i.e. the grid's (h, w) times
    ``stride``, anchored at the image's top-left corner: the padded input for detectron2's FPN, and for
    YOLACT's unpadded FPN (2 ceil(H / 8) x 2 ceil(W / 8) prototype cells at stride 4) a region up to 7 px larger
    than the image. Derive it from the prototypes the network produced, never from the image size alone.
    ``instances.gt_masks`` is a BitMasks (G, h, w) of the unpadded image; it is zero-padded (or cropped) at
    the bottom / right to (Hp, Wp). Returns float (G, Hp / stride, Wp / stride) with values in [0, 1].
    """
    hp, wp = padded_size
    if hp % stride or wp % stride:
        raise ValueError(
            f"gt_masks_on_grid: region {tuple(padded_size)} is not a whole number of stride-{stride} cells; pass "
            "the prototype grid's size times the stride"
        )
    g = len(instances)
    device = instances.gt_boxes.tensor.device
    if g == 0:
        return torch.zeros(0, hp // stride, wp // stride, device=device)
    masks = instances.gt_masks.tensor.to(device=device, dtype=torch.float32)
    masks = F.pad(masks, (0, wp - masks.shape[-1], 0, hp - masks.shape[-2]))  # negative: crop
    return F.avg_pool2d(masks[:, None], kernel_size=stride, stride=stride)[:, 0]


def assign_detections(det_boxes: torch.Tensor, gt_boxes: torch.Tensor, iou_threshold: float = 0.5) -> torch.Tensor:
    """Assign annotations to detections by box IoU (§3.5).

    A detection matches an annotation when their IoU is at least ``iou_threshold``; when several detections
    match the same annotation the best-overlapping one gets it and the rest are negatives. Pairs are taken
    greedily in decreasing IoU, so each detection also gets at most one annotation.

    det_boxes: (M, 4) XYXY; gt_boxes: (G, 4) XYXY. Returns int64 (M,) annotation index or -1.
    """
    m, g = det_boxes.shape[0], gt_boxes.shape[0]
    out = torch.full((m,), -1, dtype=torch.long, device=det_boxes.device)
    if m == 0 or g == 0:
        return out
    iou = box_iou(det_boxes, gt_boxes)
    iou = torch.where(iou >= iou_threshold, iou, torch.full_like(iou, -1.0))
    for _ in range(min(m, g)):
        best = torch.argmax(iou)
        if iou.view(-1)[best] < 0:
            break
        d, a = divmod(int(best), g)
        out[d] = a
        iou[d, :] = -1.0
        iou[:, a] = -1.0
    return out
