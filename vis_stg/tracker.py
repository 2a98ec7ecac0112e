"""Tracking with edge features (§3.5) and the online occlusion memory (§3.6).

- :class:`EdgeClassifier`: binary classifier on the final edge features h^e(L); loss eq. (6) over the pruned
  edge set, built at training as at test time from the predicted detections (:mod:`.edge_targets`).
- :class:`OnlineTracker`: at test time, edges are kept only to detected target nodes (background pruning)
  whose predicted class equals the reference instance's class; each reference instance keeps its best edge
  above ``MATCH_THRESH``. Matching is greedy one-to-one by descending probability, so a detection also
  extends at most one track. Unmatched detections start new tracks. A detection becomes a reference instance
  of the next frame when it continues a track or scores at least ``TRACK.REF_SCORE_THRESH`` (low-confidence
  detections are reported but do not become graph nodes). Unmatched reference instances stay in the memory —
  node features and kernel — while ``t - last_seen <= Δt`` (``MEMORY_FRAMES``).

At test time everything runs on fixed-size tensors without host syncs: detections are padded slots with a
``valid`` mask, the greedy matching is computed in parallel rounds (:mod:`.sync_free`), track ids come from a
device counter and the next reference set is compacted by a stable sort (its size is read with the frame's
outputs).

Shapes: N reference instances (frame t-1's detections + memory), D detection slots of frame t (padded,
``valid`` mask), P = 169 dynamic-kernel parameters, E embedding dim.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .edge_targets import edge_set_and_labels
from .graph import GraphEdges
from .sync_free import EXACT, greedy_match_fixed_point, stable_compact
from .targets import CenterTargets

__all__ = ["EdgeClassifier", "ReferenceSet", "VideoState", "OnlineTracker", "greedy_match"]


class EdgeClassifier(nn.Module):
    """h^e(L) (E, D) -> association logit (E,) (eq. (6))."""

    def __init__(self, dim: int, hidden_dim: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, 1))

    def forward(self, edge_features: torch.Tensor) -> torch.Tensor:
        return self.mlp(edge_features).squeeze(-1)

    def losses(
        self,
        edges: Sequence[GraphEdges],
        ref_ids: torch.Tensor,
        ref_classes: torch.Tensor,
        ref_batch: torch.Tensor,
        targets: CenterTargets,
        shapes: Sequence[Tuple[int, int]],
        strides: Sequence[float],
        heatmaps: Optional[Sequence[torch.Tensor]],
        num_classes: int,
        edge_set: str = "predicted",
        score_thresh: float = 0.05,
        match_radius: int = 1,
        prune_class_mismatch: bool = True,
    ) -> torch.Tensor:
        """Eq. (6): mean BCE over the training edge set E_prune and its labels (:mod:`.edge_targets`).
        ``shapes`` / ``strides``: per level (H, W) and input pixels per cell; ``heatmaps``: per level
        (B, K, H, W) heat-map logits predicted on F̂_t."""
        logits, labels = [], []
        for lvl, (e, shape, stride) in enumerate(zip(edges, shapes, strides)):
            keep, y = edge_set_and_labels(
                e,
                lvl,
                shape,
                stride,
                ref_ids,
                ref_classes,
                ref_batch,
                targets,
                None if heatmaps is None else heatmaps[lvl],
                num_classes,
                edge_set,
                score_thresh,
                match_radius,
                prune_class_mismatch,
            )
            logits.append(self(e.features[keep]))
            labels.append(y[keep])
        logits, labels = torch.cat(logits), torch.cat(labels)
        if logits.numel() == 0:  # keep every parameter in the graph (DDP)
            return sum(p.sum() for p in self.parameters()) * 0.0
        return F.binary_cross_entropy_with_logits(logits, labels)


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

    def reset_frame_context(self) -> None:
        """Forget everything tied to the previous frame's geometry (keeps the track-id counter)."""
        self.refs, self.prev_features, self.prev_thetas, self.input_shape = None, None, None, None
        self.pending_nodes = 0


def greedy_match(scores: torch.Tensor, valid: torch.Tensor, iters: int = EXACT) -> torch.Tensor:
    """One-to-one matching of (N_ref, N_det) ``scores`` over ``valid`` pairs by descending score.
    Returns (N_det,) the matched reference index or -1 (:func:`.sync_free.greedy_match_fixed_point`;
    ``iters`` rounds, by default enough for the exact result)."""
    return greedy_match_fixed_point(scores, valid, iters)[0]


class OnlineTracker:
    """Association, track ids and occlusion memory of online inference (§3.5, §3.6), on fixed-size tensors:
    detections come as D padded slots with a ``valid`` mask and nothing here reads a value back to the host."""

    def __init__(self, memory_frames: int = 7, prune_class_mismatch: bool = True, ref_score_thresh: float = 0.0):
        self.memory_frames = memory_frames
        self.prune_class_mismatch = prune_class_mismatch
        self.ref_score_thresh = ref_score_thresh

    def associate(
        self,
        scores: torch.Tensor,
        valid: torch.Tensor,
        ref_classes: torch.Tensor,
        det_classes: torch.Tensor,
        iters: int = EXACT,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Prune class-mismatched pairs and match. ``scores``/``valid`` (N_ref, N_det): pair scores and which
        pairs are candidates (an edge exists and passes the model's threshold). Returns (N_det,) ref or -1
        and the matcher's ``converged`` flag (``iters`` rounds; default enough for the exact result)."""
        if self.prune_class_mismatch:
            valid = valid & (ref_classes[:, None] == det_classes[None, :])
        return greedy_match_fixed_point(scores, valid, iters)

    @staticmethod
    def assign_track_ids(
        state: VideoState,
        refs: Optional[ReferenceSet],
        det_to_ref: torch.Tensor,
        det_valid: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Matched detections inherit their reference's track id; the other valid ones start new tracks in
        slot order (padded slots get -1). Advances ``state.next_track_id`` on the device."""
        valid = torch.ones_like(det_to_ref, dtype=torch.bool) if det_valid is None else det_valid
        matched = (det_to_ref >= 0) & valid
        new = valid & ~matched
        fresh = state.next_track_id + new.long().cumsum(0) - 1
        track_ids = torch.where(new, fresh, -1)
        if refs is not None and len(refs) > 0:
            track_ids = torch.where(matched, refs.track_ids[det_to_ref.clamp(min=0)], track_ids)
        state.next_track_id = state.next_track_id + new.long().sum()
        return track_ids

    def next_references_padded(
        self,
        current: ReferenceSet,
        refs: Optional[ReferenceSet],
        det_to_ref: torch.Tensor,
        frame_idx: int,
        det_valid: Optional[torch.Tensor] = None,
    ) -> Tuple[ReferenceSet, torch.Tensor, torch.Tensor]:
        """Reference set for frame ``frame_idx + 1``: this frame's detections that continue a track or score at
        least ``ref_score_thresh``, then the unmatched earlier instances still inside the memory window
        (frame_idx + 1 - last_seen <= Δt), both in their order. Fixed size: returns all D + N candidates with
        the kept ones first, the number kept and the number of kept detections (0-dim device tensors)."""
        keep_cur = (current.scores >= self.ref_score_thresh) | (det_to_ref >= 0)
        if det_valid is not None:
            keep_cur = keep_cur & det_valid
        keep, candidates = keep_cur, current
        if refs is not None and len(refs) > 0:
            alive = ~_any_match(det_to_ref, len(refs)) & (frame_idx + 1 - refs.last_seen <= self.memory_frames)
            keep, candidates = torch.cat([keep_cur, alive]), ReferenceSet.cat(current, refs)
        order, count = stable_compact(keep)
        return candidates[order], count, keep_cur.sum()

    def next_references(
        self,
        current: ReferenceSet,
        refs: Optional[ReferenceSet],
        det_to_ref: torch.Tensor,
        frame_idx: int,
        det_valid: Optional[torch.Tensor] = None,
    ) -> ReferenceSet:
        """:meth:`next_references_padded` cut to the kept instances (reads the count: one host sync)."""
        padded, count, _ = self.next_references_padded(current, refs, det_to_ref, frame_idx, det_valid)
        return padded[slice(0, int(count))]


def _any_match(det_to_ref: torch.Tensor, num_refs: int) -> torch.Tensor:
    """(num_refs,) bool: the reference is matched by some detection."""
    hit = torch.zeros(num_refs + 1, dtype=torch.bool, device=det_to_ref.device)
    return hit.index_fill(0, torch.where(det_to_ref >= 0, det_to_ref, num_refs), True)[:num_refs]
