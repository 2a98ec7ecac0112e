"""State of online inference (§3.6): the reference instances of the next graph and the per-video state.

Shapes: N reference instances (frame t-1's detections + the occlusion memory), P = 169 dynamic-kernel
parameters, E embedding dim. The functions that update them each frame are in :mod:`.online_step`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Dict, List, Optional, Tuple, Union

import torch

__all__ = ["ReferenceSet", "VideoState"]


@dataclass
class ReferenceSet:
    """The N reference instances of the next graph: frame t-1's detections plus the occlusion memory.

    ``track_ids``, ``classes``, ``last_seen`` (N,) int64; ``scores`` (N,); ``boxes`` (N, 4) XYXY input pixels;
    ``nodes``: per level (N, D) node features h^v (ROIAlign of the frame they were seen in); ``kernels``
    (N, 169) θ at their detection and ``kernel_levels`` (N,) int64 the FPN level it was read from (a kernel's
    relative coordinates are normalised by its level's size, §3.4: a memory kernel is decoded with that
    level's normaliser wherever its object is detected again); ``embeddings`` (N, E) for the embedding
    baseline, else None.
    """

    track_ids: torch.Tensor
    classes: torch.Tensor
    scores: torch.Tensor
    boxes: torch.Tensor
    nodes: List[torch.Tensor]
    kernels: torch.Tensor
    kernel_levels: torch.Tensor
    last_seen: torch.Tensor
    embeddings: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.track_ids.numel()

    def __getitem__(self, idx: torch.Tensor) -> ReferenceSet:
        return ReferenceSet(**{f.name: _index(getattr(self, f.name), idx) for f in fields(self)})

    @staticmethod
    def cat(a: ReferenceSet, b: ReferenceSet) -> ReferenceSet:
        return ReferenceSet(**{f.name: _cat(getattr(a, f.name), getattr(b, f.name)) for f in fields(a)})

    @property
    def centers(self) -> torch.Tensor:
        return (self.boxes[:, :2] + self.boxes[:, 2:]) / 2


def _index(value, idx):
    if value is None:
        return None
    if isinstance(value, list):
        return [v[idx] for v in value]
    return value[idx]


def _cat(a, b):
    if a is None or b is None:
        return None
    if isinstance(a, list):
        return [torch.cat([x, y]) for x, y in zip(a, b)]
    return torch.cat([a, b])


@dataclass
class VideoState:
    """Per-video state of online inference (``VisSTG.init_video_state``).

    ``next_track_id`` becomes a 0-dim device tensor after the first frame (ids are assigned on the device).
    ``refs`` holds exactly ``len(refs)`` instances, the count read back with the previous frame's outputs; the
    first ``pending_nodes`` of them are frame t-1's detections, whose node features are ROIAligned from
    ``prev_features`` only when the next frame reads them."""

    next_track_id: Union[int, torch.Tensor] = 0
    refs: Optional[ReferenceSet] = None
    prev_features: Optional[List[torch.Tensor]] = None  # F_{t-1} per level, for the kernel warp
    prev_thetas: Optional[List[torch.Tensor]] = None  # θ_{t-1} maps per level
    input_shape: Optional[Tuple[int, int]] = None  # padded input size the above were computed at
    num_frames: int = 0  # frames processed so far (for TRACK.VIDEO_SCORE "coverage")
    pending_nodes: int = 0
    # What the detection caps dropped so far (VisSTG.video_diagnostics): frames where a cap bound, and the count.
    frames_over_topk_candidates: int = 0
    candidates_over_topk_candidates: int = 0
    frames_over_max_detections: int = 0
    detections_over_max_detections: int = 0

    def count_dropped(self, over_topk: int, over_max_detections: int) -> None:
        """Add one frame's counts of peaks beyond ``TOPK_CANDIDATES`` / detections beyond ``MAX_DETECTIONS``."""
        self.frames_over_topk_candidates += int(over_topk > 0)
        self.candidates_over_topk_candidates += int(over_topk)
        self.frames_over_max_detections += int(over_max_detections > 0)
        self.detections_over_max_detections += int(over_max_detections)

    def diagnostics(self) -> Dict[str, int]:
        """Frames where more detections survived NMS than ``INFERENCE.MAX_DETECTIONS`` slots, or more peaks passed
        the score threshold than ``INFERENCE.TOPK_CANDIDATES``, and how many each dropped (host integers, counted
        from each frame's one device-to-host copy: no extra sync)."""
        return {
            "frames": self.num_frames,
            "frames_over_max_detections": self.frames_over_max_detections,
            "detections_over_max_detections": self.detections_over_max_detections,
            "frames_over_topk_candidates": self.frames_over_topk_candidates,
            "candidates_over_topk_candidates": self.candidates_over_topk_candidates,
        }

    def reset_frame_context(self) -> None:
        """Forget everything tied to the previous frame's geometry (keeps the track-id counter)."""
        self.refs, self.prev_features, self.prev_thetas, self.input_shape = None, None, None, None
        self.pending_nodes = 0
