"""Raw inputs of the first GNN block of RGNN-VIS, built from the track memory and a frame's detections (§3.1,
App. A.2 Table 3), as the authors' release builds them (docs/rgnn_release_port.md, "Ported", item 1).

Shapes: B videos, N' track slots processed this frame (the leading N' of the N slots), M detection slots
(padded), K+1 classes (background last), A appearance dim.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from .appearance import gaussian_log_likelihood
from .track_state import FrameDetections, TrackState

__all__ = ["pairwise_box_iou", "graph_inputs", "release_normalize_boxes", "release_log_likelihood"]

RELEASE_LOG2PI = 1.8379  # the release's rgnn.py LOG2PI (log 2 pi = 1.837877...)
RELEASE_BOX_SCALE = (864.0, 480.0)  # the release's normalize_boxes: x / 864, y / 480 (its fixed input size)
RELEASE_LOGIT_PAD = -100.0  # class logits of padded detections (pad_and_stack(pad_val=-100))


def pairwise_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched IoU. a: (B, N, 4), b: (B, M, 4) XYXY -> (B, N, M). Not ``torchvision.ops.box_iou``: that one is
    2-D only and gives NaN (0 / 0) between two zero-area boxes, which every pair of padded slots is; here the
    union is clamped at 1e-6, so their IoU is 0 (otherwise the two agree exactly)."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[:, :, None, :2], b[:, None, :, :2])
    rb = torch.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    return inter / (area_a[:, :, None] + area_b[:, None, :] - inter).clamp(min=1e-6)


def release_normalize_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """XYXY input pixels (..., 4) -> the release's ``normalize_boxes``: 2 x / 864 - 1, 2 y / 480 - 1 (fixed
    scale: the release always resizes its input to 480 x 864)."""
    w, h = RELEASE_BOX_SCALE
    return boxes * boxes.new_tensor([2 / w, 2 / h, 2 / w, 2 / h]) - 1.0


def release_log_likelihood(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Summed log N(x | mean, diag(var)) over the A channels with log 2 pi written 1.8379, as the release's
    ``TrackDetectionMatcher._get_*_edges``; from the channel average of
    :func:`~vis_rgnn.appearance.gaussian_log_likelihood`: A x mean + A / 2 (log 2 pi - 1.8379)."""
    a = x.shape[-1]
    return a * gaussian_log_likelihood(x, mean, var) + 0.5 * a * (math.log(2 * math.pi) - RELEASE_LOG2PI)


def graph_inputs(
    state: TrackState,
    dets: FrameDetections,
    n_used: int,
    empty_appearance: Optional[Tuple[torch.Tensor, torch.Tensor]],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw edge / new-track edge / detection inputs of the first GNN block for the first ``n_used`` = N' slots:
    those of the release's ``TrackDetectionMatcher`` (``det_stuff`` = lbscores + boxes, ``trkdet_stuff`` =
    Gaussian log-likelihood + IoU, ``bkgdet_stuff`` = Gaussian log-likelihood), in this project's class order
    (background last).

    dets (B, M, K+4+... ) = detection vertex [raw class logits (``RELEASE_LOGIT_PAD`` on padded slots), box by
    :func:`release_normalize_boxes`]; edges (B, N', M, K+4+2) = [detection vertex, -4 + 0.01 ll, 2 IoU - 1];
    empty_edges (B, M, K+4+1) = [detection vertex, -4 + 0.01 ll under the empty track's Gaussian], ll by
    :func:`release_log_likelihood`. ``empty_appearance``: (mean, variance) (B, A) of the empty track or None
    (appearance disabled: ll = 0). Returns edges, empty_edges, dets and the IoU (B, N', M).
    """
    iou = pairwise_box_iou(state.boxes[:, :n_used], dets.boxes)
    logits = torch.where(dets.valid[..., None], dets.class_logits, RELEASE_LOGIT_PAD)
    det_raw = torch.cat([logits, release_normalize_boxes(dets.boxes)], dim=-1)
    if empty_appearance is not None:
        empty_mean, empty_var = empty_appearance
        x = dets.appearance
        ll = release_log_likelihood(x[:, None], state.app_mean[:, :n_used, None], state.app_var[:, :n_used, None])
        empty_ll = release_log_likelihood(x, empty_mean[:, None], empty_var[:, None])
    else:
        ll, empty_ll = iou.new_zeros(iou.shape), iou.new_zeros(dets.scores.shape)
    n_det = det_raw[:, None].expand(-1, n_used, -1, -1)
    edges = torch.cat([n_det, (-4.0 + 0.01 * ll)[..., None], (2.0 * iou - 1.0)[..., None]], dim=-1)
    empty_edges = torch.cat([det_raw, (-4.0 + 0.01 * empty_ll)[..., None]], dim=-1)
    return edges, empty_edges, det_raw, iou
