"""YOLACT's test-time post-processing for single images (Bolya et al. 2019, §3.3-3.4; dbolya/yolact ``Detect``
with ``use_fast_nms`` and ``output_utils.postprocess``), written without host synchronisation until the one
read of the number of detections that sizes the output ``Instances``.

Steps, in YOLACT's order:

1. decode every anchor's box on normalised coordinates (:func:`decode_boxes`, variances 0.1 / 0.2);
2. candidates are the anchors whose best foreground probability is > ``conf_thresh`` (0.05);
3. per class, the ``top_k`` (200) highest-scoring candidates go through Fast NMS (IoU > 0.5 with any
   higher-scoring box of the same class, suppressed or not, removes a box); with ``second_threshold`` False
   (YOLACT's evaluation default) a kept box's *own-class* score is not re-thresholded, so detections below 0.05
   can remain;
4. the ``max_detections`` (100) best kept (box, class) pairs over all classes;
5. masks ``sigmoid(prototypes @ coefficients)``, zeroed outside the box on the prototype grid
   (:func:`crop_to_boxes`: ``sanitize_coordinates`` with 1 cell of padding), bilinearly resized
   (``align_corners=False``) to the output size and thresholded ``> 0.5``;
6. boxes scaled to the output size, ordered and clamped by ``sanitize_coordinates`` and, as YOLACT returns
   them, truncated to integers (``integer_boxes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from detectron2.structures import Boxes, Instances

__all__ = [
    "ImagePostprocessParams",
    "decode_boxes",
    "sanitize_coordinates",
    "crop_to_boxes",
    "batched_box_iou",
    "class_fast_nms",
    "image_detections",
]


@dataclass(frozen=True)
class ImagePostprocessParams:
    """``MODEL.RGNN.DETECTOR.IMAGE_TEST.*``; defaults are YOLACT's evaluation values."""

    conf_thresh: float = 0.05
    nms_thresh: float = 0.5
    top_k: int = 200
    max_detections: int = 100
    second_threshold: bool = False
    mask_thresh: float = 0.5
    crop_padding: int = 1
    integer_boxes: bool = True


def decode_boxes(
    deltas: torch.Tensor, priors: torch.Tensor, variances: Tuple[float, float] = (0.1, 0.2)
) -> torch.Tensor:
    """SSD/YOLACT box decoding. deltas (A, 4) = (dx, dy, dw, dh); priors (A, 4) = (cx, cy, w, h), both on the
    same (normalised) scale. Returns (A, 4) XYXY: centre ``c + d_xy * v0 * wh``, size ``wh * exp(d_wh * v1)``
    (no clamping, as YOLACT)."""
    centre = priors[:, :2] + deltas[:, :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(deltas[:, 2:] * variances[1])
    low = centre - size / 2
    return torch.cat([low, size + low], dim=1)  # x2 = w + x1, YOLACT's order of float operations


def sanitize_coordinates(x1: torch.Tensor, x2: torch.Tensor, scale: float, size: float, padding: float = 0):
    """YOLACT's ``sanitize_coordinates``: scale normalised coordinates by ``scale``, order them, widen by
    ``padding`` and clamp to [0, size] (the lower one only from below, the upper one only from above)."""
    x1, x2 = x1 * scale, x2 * scale
    lo, hi = torch.minimum(x1, x2), torch.maximum(x1, x2)
    return (lo - padding).clamp(min=0), (hi + padding).clamp(max=size)


def crop_to_boxes(masks: torch.Tensor, boxes: torch.Tensor, padding: float = 1) -> torch.Tensor:
    """Zero every mask outside its box, YOLACT's ``crop``: masks (N, h, w); boxes (N, 4) XYXY normalised to
    the mask grid. Cell (y, x) is kept when ``x1 <= x < x2`` and ``y1 <= y < y2`` (cell indices, not centres),
    after :func:`sanitize_coordinates` with ``padding`` cells."""
    n, h, w = masks.shape
    x1, x2 = sanitize_coordinates(boxes[:, 0], boxes[:, 2], w, w, padding)
    y1, y2 = sanitize_coordinates(boxes[:, 1], boxes[:, 3], h, h, padding)
    cols = torch.arange(w, device=masks.device, dtype=x1.dtype).view(1, 1, w)
    rows = torch.arange(h, device=masks.device, dtype=y1.dtype).view(1, h, 1)
    inside = (
        (cols >= x1.view(n, 1, 1)) & (cols < x2.view(n, 1, 1)) & (rows >= y1.view(n, 1, 1)) & (rows < y2.view(n, 1, 1))
    )
    return masks * inside.to(masks.dtype)


def batched_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(C, N, 4) x (C, M, 4) XYXY -> (C, N, M) IoU (YOLACT's batched ``jaccard``)."""
    lt = torch.maximum(a[:, :, None, :2], b[:, None, :, :2])
    rb = torch.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    area_a = ((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]))[:, :, None]
    area_b = ((b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]))[:, None, :]
    return inter / (area_a + area_b - inter)


def class_fast_nms(boxes: torch.Tensor, scores: torch.Tensor, params: ImagePostprocessParams):
    """Class-aware Fast NMS with fixed-size outputs.

    boxes: (A, 4) XYXY; scores: (A, C) foreground class probabilities. Returns ``anchor`` (D,), ``classes``
    (D,), ``scores`` (D,) and ``valid`` (D,) bool with D = min(max_detections, C * min(top_k, A)), sorted by
    decreasing score; the valid entries form a prefix.
    """
    num_anchors, num_classes = scores.shape
    candidate = scores.max(dim=1).values > params.conf_thresh  # (A,)
    # Non-candidates get -1 (< every probability): they sort after all candidates, so they can never
    # suppress one (only higher-scoring boxes suppress), and they are marked invalid below.
    masked = torch.where(candidate[:, None], scores, scores.new_full((), -1.0)).t()  # (C, A)
    k = min(params.top_k, num_anchors)
    top_scores, top_idx = masked.topk(k, dim=1)  # (C, k), descending
    top_boxes = boxes[top_idx]  # (C, k, 4)
    iou = batched_box_iou(top_boxes, top_boxes).triu_(diagonal=1)
    keep = (iou.max(dim=1).values <= params.nms_thresh) & (top_scores >= 0)
    if params.second_threshold:
        keep = keep & (top_scores > params.conf_thresh)
    flat = torch.where(keep, top_scores, top_scores.new_full((), float("-inf"))).flatten()
    d = min(params.max_detections, flat.numel())
    out_scores, flat_idx = flat.topk(d)
    return top_idx.flatten()[flat_idx], flat_idx // k, out_scores, torch.isfinite(out_scores)


def image_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    coeffs: torch.Tensor,
    protos: torch.Tensor,
    image_size: Tuple[int, int],
    input_size: Tuple[int, int],
    output_size: Tuple[int, int],
    params: ImagePostprocessParams,
) -> Instances:
    """Detections of one image in detectron2's format.

    boxes: (A, 4) XYXY normalised to the network input of size ``input_size`` = (Hp, Wp) (padding included);
    scores: (A, K) foreground probabilities; coeffs: (A, k); protos: (k, h, w) covering the network input;
    image_size: (h, w) of the image inside the input (bottom/right padding excluded); output_size: (H, W).
    Returns Instances (H, W) with pred_boxes, scores, pred_classes, bool pred_masks (N, H, W).
    """
    out_h, out_w = output_size
    anchor, classes, det_scores, valid = class_fast_nms(boxes, scores, params)
    n = int(valid.sum())  # the one host read: the output's length
    anchor, classes, det_scores = anchor[:n], classes[:n], det_scores[:n]
    det_boxes = boxes[anchor]
    masks = torch.sigmoid(torch.einsum("khw,nk->nhw", protos, coeffs[anchor]))
    masks = crop_to_boxes(masks, det_boxes, params.crop_padding)
    hp, wp = input_size
    h, w = image_size
    if n == 0:  # interpolate rejects empty batches
        masks = masks.new_zeros(0, out_h, out_w)
    else:
        if (h, w) != (hp, wp):  # padded input: prototypes cover the padding, cut it off at input resolution
            masks = F.interpolate(masks[None], size=(hp, wp), mode="bilinear", align_corners=False)[0, :, :h, :w]
        masks = F.interpolate(masks[None], size=(out_h, out_w), mode="bilinear", align_corners=False)[0]
    sx, sy = (out_w if w == wp else wp * out_w / w), (out_h if h == hp else hp * out_h / h)
    x1, x2 = sanitize_coordinates(det_boxes[:, 0], det_boxes[:, 2], sx, out_w)
    y1, y2 = sanitize_coordinates(det_boxes[:, 1], det_boxes[:, 3], sy, out_h)
    xyxy = torch.stack([x1, y1, x2, y2], dim=1)
    if params.integer_boxes:
        xyxy = torch.trunc(xyxy)
    result = Instances((out_h, out_w))
    result.pred_boxes = Boxes(xyxy)
    result.scores = det_scores
    result.pred_classes = classes
    result.pred_masks = masks > params.mask_thresh
    return result
