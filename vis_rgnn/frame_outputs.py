"""What RGNN-VIS returns per frame and per video, as the authors' release does (github joakimjohnander/RGNNVIS:
``rgnnvis/models/rgnn.py`` ``RGNN.forward`` / ``TrackModule``, ``rgnnvis/engines/vis_evaluator.py``
``save_predictions_ytvis``): the track confidence, the frame's masks, and the checks of the release switches that
remain (``MODEL.RGNN.DETECTION_MASK_SCORES``, ``DETECTION_DESCRIPTOR``, ``MASK_REWEIGHT_INPUT``).

Shapes: N track slots, K+1 classes (background last), P tracks holding a detection, (gh, gw) the mask grid.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from .heads import exclusive_masks

__all__ = [
    "RELEASE_BACKGROUND_SCORE",
    "track_confidence",
    "grid_logits_to_frame",
    "frame_masks",
    "check_release_switches",
]

# TrackModule / _pack_video_instance_output: the instance map's background channel is a constant 10 (the
# runfile's bg_segscore is not used by the map the results are written from).
RELEASE_BACKGROUND_SCORE = 10.0


def track_confidence(probs: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Track confidence (§3.2 "our trust about whether the track is a true positive") from class probabilities
    (..., K+1), background last: max_c p(c) over the K foreground classes, the release's (its results' score is
    max_c log p(c), the log of this; the same ranking)."""
    return probs[..., :num_classes].max(dim=-1).values


def grid_logits_to_frame(
    logits: torch.Tensor, stride: int, image_size: Tuple[int, int], out_size: Tuple[int, int]
) -> torch.Tensor:
    """Mask logits (P, gh, gw) on the prototype grid -> (P, H, W) on the output frame ``out_size``.

    Cell (i, j) of the grid covers input pixels [stride i, stride (i + 1)) x [stride j, stride (j + 1)) from the
    top-left corner, so the grid covers at least the network input of ``image_size`` = (h, w) (before padding):
    the padding for detectron2's FPN, and up to 7 more pixels for YOLACT's unpadded FPN (2 ceil(h / 8) cells
    at stride 4). The grid is upsampled by ``stride``, cut to (h, w), then resized to the frame (the input is
    the frame resized to ``TEST_RESIZE`` or the test-time augmentation's size)."""
    h, w = image_size
    x = F.interpolate(logits[None], scale_factor=stride, mode="bilinear", align_corners=False)[:, :, :h, :w]
    if (h, w) != tuple(out_size):  # same size: bilinear resampling is the identity
        x = F.interpolate(x, size=tuple(out_size), mode="bilinear", align_corners=False)
    return x[0]


def frame_masks(
    logits: torch.Tensor,
    stride: int,
    image_size: Tuple[int, int],
    out_size: Tuple[int, int],
    background: float = 0.0,
) -> torch.Tensor:
    """The frame's bool masks (P, H, W) of the P tracks' score maps (P, gh, gw) (slot order), one pixel per track
    at most: it goes to the highest score if that exceeds ``background`` (ties: the background, then the earlier
    slot -- the release's argmax over [background, tracks]). As the release's ``RGNN.forward``, the grid is
    resized bilinearly straight to the frame when it covers exactly the network input ``image_size`` (the
    release's 480 x 864); otherwise (a grid that covers padding too) through :func:`grid_logits_to_frame`.
    ``background``: 0 for logits, 10 for the release's score maps (``RELEASE_BACKGROUND_SCORE``)."""
    if logits.shape[0] == 0:
        return torch.zeros(0, *out_size, dtype=torch.bool, device=logits.device)
    if (logits.shape[-2] * stride, logits.shape[-1] * stride) == tuple(image_size):
        x = F.interpolate(logits[None], size=tuple(out_size), mode="bilinear", align_corners=False)[0]
    else:
        x = grid_logits_to_frame(logits, stride, image_size, out_size)
    return exclusive_masks(x - background if background else x)


def check_release_switches(r) -> None:
    """``MODEL.RGNN`` (CfgNode): the release's descriptor and re-weighting inputs read the release's detection
    score maps, and those score maps need both. Raises ValueError naming the keys."""
    for key in ("DETECTION_DESCRIPTOR", "MASK_REWEIGHT_INPUT"):
        if r.get(key) == "release" and r.DETECTION_MASK_SCORES != "release":
            raise ValueError(
                f"MODEL.RGNN.{key} 'release' reads the release's detection score maps: set "
                f"MODEL.RGNN.DETECTION_MASK_SCORES 'release' (got {r.DETECTION_MASK_SCORES!r})"
            )
    needs = {"MASK_REWEIGHT_INPUT": r.MASK_REWEIGHT_INPUT}
    if r.APPEARANCE.ENABLED:
        needs["DETECTION_DESCRIPTOR"] = r.DETECTION_DESCRIPTOR
    wrong = [k for k, v in needs.items() if v != "release"]
    if r.DETECTION_MASK_SCORES == "release" and wrong:
        raise ValueError(
            "MODEL.RGNN.DETECTION_MASK_SCORES 'release' gives score maps, not probabilities: set "
            + ", ".join(f"MODEL.RGNN.{k} 'release'" for k in wrong)
            + " too"
        )
