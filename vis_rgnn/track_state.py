"""What the RGNN-VIS tracker reads, keeps and returns each frame: the padded detections of a frame, the track
memory of fixed-size slots with an ``alive`` mask (App. A.3), and the outputs of one step.

Shapes: B videos, N track slots (``MAX_TRACKS``), N' <= N the leading slots the GNN processed this frame,
M detection slots (padded, ``valid`` mask), K+1 classes (background last), D track embedding dim, A appearance
dim, (h, w) the prototype (mask) grid, P tracks holding a detection this frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import Optional, Sequence, Tuple

import torch
from detectron2.structures import Instances

__all__ = ["FrameDetections", "TrackState", "FrameOutput"]


@dataclass
class FrameDetections:
    """Detections of one frame for B videos, padded to M: boxes (B, M, 4) XYXY input pixels, class_probs
    (B, M, K+1), scores (B, M), masks (B, M, h, w) on the prototype grid, appearance (B, M, A), valid (B, M),
    image_sizes (B, 2) = (h, w) of the resized input before padding; class_logits (B, M, K+1) the raw class
    logits (the release's GNN input; from the detector's ``class_logits`` field, else the log-probabilities, equal
    up to a per-detection constant); background_appearance (B, A) the frame's background descriptor (the release's
    ``DetectionDescriptorExtractor`` global average pool, observed by the empty track's Gaussian; zeros when the
    appearance net gives none)."""

    boxes: torch.Tensor
    class_probs: torch.Tensor
    scores: torch.Tensor
    masks: torch.Tensor
    appearance: torch.Tensor
    valid: torch.Tensor
    image_sizes: torch.Tensor
    class_logits: Optional[torch.Tensor] = None
    background_appearance: Optional[torch.Tensor] = None

    def __post_init__(self):
        # Always tensors (callers such as :meth:`float32` iterate over every field).
        if self.class_logits is None:
            self.class_logits = self.class_probs.clamp(min=1e-30).log()
        if self.background_appearance is None:
            self.background_appearance = self.appearance.new_zeros(self.appearance.shape[0], self.appearance.shape[-1])

    def float32(self) -> FrameDetections:
        """These detections with float32 tensors. Under autocast (``SOLVER.AMP`` / ``TEST.AMP``) the segmenter and
        the appearance net run in reduced precision, the recurrent tracker in float32: its state accumulates over
        the whole video and it is a small part of the compute."""
        low = {
            f.name: getattr(self, f.name).float()
            for f in fields(self)
            if getattr(self, f.name).is_floating_point() and getattr(self, f.name).dtype != torch.float32
        }
        return replace(self, **low) if low else self

    @cached_property
    def class_log_probs(self) -> torch.Tensor:
        """(B, M, K+1) class log-probabilities clamped at log 1e-4 (the track-scoring input)."""
        return self.class_probs.clamp(min=1e-4).log()

    @classmethod
    def from_instances(
        cls,
        dets: Sequence[Instances],
        appearance: Sequence[torch.Tensor],
        image_sizes: Sequence[Tuple[int, int]],
        background_appearance: Optional[torch.Tensor] = None,
    ) -> FrameDetections:
        """Pads per-image detector outputs (see :class:`~vis_rgnn.detector.YolactDetector`). Detections with a
        ``valid`` field (the detector's fixed-size output) are stacked as they are, without host syncs; others
        count as all valid. appearance: (M_i, A) per image; background_appearance: (B, A) or None. A
        ``class_logits`` field (M_i, K+1) on every image is taken as the raw class logits."""
        ref = dets[0].class_probs
        sizes = torch.as_tensor(image_sizes, dtype=ref.dtype).view(len(dets), 2).to(ref.device, non_blocking=True)
        logits = all(d.has("class_logits") for d in dets)
        if all(d.has("valid") for d in dets) and len({len(d) for d in dets}) == 1:
            return cls(
                boxes=torch.stack([d.pred_boxes.tensor for d in dets]),
                class_probs=torch.stack([d.class_probs for d in dets]),
                scores=torch.stack([d.scores for d in dets]),
                masks=torch.stack([d.pred_masks for d in dets]),
                appearance=torch.stack(list(appearance)),
                valid=torch.stack([d.valid for d in dets]),
                image_sizes=sizes,
                class_logits=torch.stack([d.class_logits for d in dets]) if logits else None,
                background_appearance=background_appearance,
            )
        b, m = len(dets), max([len(d) for d in dets] + [0])
        k1, (h, w), a = ref.shape[1], dets[0].pred_masks.shape[-2:], appearance[0].shape[-1]
        out = cls(
            boxes=ref.new_zeros(b, m, 4),
            class_probs=ref.new_zeros(b, m, k1),
            scores=ref.new_zeros(b, m),
            masks=ref.new_zeros(b, m, h, w),
            appearance=torch.stack([torch.cat([app, app.new_zeros(m - len(app), a)]) for app in appearance]),
            valid=torch.zeros(b, m, dtype=torch.bool, device=ref.device),
            image_sizes=sizes,
            class_logits=ref.new_zeros(b, m, k1) if logits else None,
            background_appearance=background_appearance,
        )
        for i, d in enumerate(dets):
            n = len(d)
            out.boxes[i, :n] = d.pred_boxes.tensor
            out.class_probs[i, :n] = d.class_probs
            if logits:
                out.class_logits[i, :n] = d.class_logits
            out.scores[i, :n] = d.scores
            out.masks[i, :n] = d.pred_masks
            out.valid[i, :n] = d.valid if d.has("valid") else True
        if not logits:  # filled before the rows were written: recompute from the written probabilities
            out.class_logits = out.class_probs.clamp(min=1e-30).log()
        return out


@dataclass
class TrackState:
    """Track memory of B videos with N slots: embeddings h, c (B, N, D); alive (B, N); last box (B, N, 4);
    appearance Gaussian mean / var (B, N, A); appearance of the last assigned detection app_last (B, N, A, the
    track feature of the MaskTrack R-CNN rule); sum of the class log-probabilities of the detections the track
    held, class_log_prob_sum (B, N, K+1), and their number held_count (B, N); track ids (B, N, -1 = free) and the
    next id to give, next_id (B,) int64 (on the device: new ids are assigned without host syncs); training
    identity (B, N, annotation id or -1); class of the last assigned detection (B, N). The empty track's recurrent
    state (the release's ``background``): its LSTM output and cell empty_h, empty_c (B, D), its appearance
    Gaussian empty_app_mean, empty_app_var (B, A) and empty_ready (B,) (False until frame 0 has set the mean).
    What the slot cap dropped so far (new tracks that found no free slot, App. A.3): slot_full_frames (B,) the
    frames where it dropped any, slot_dropped_tracks (B,) how many (int64 counters on the device)."""

    h: torch.Tensor
    c: torch.Tensor
    alive: torch.Tensor
    boxes: torch.Tensor
    app_mean: torch.Tensor
    app_var: torch.Tensor
    app_last: torch.Tensor
    class_log_prob_sum: torch.Tensor
    held_count: torch.Tensor
    ids: torch.Tensor
    identity: torch.Tensor
    det_class: torch.Tensor
    next_id: torch.Tensor
    empty_h: torch.Tensor
    empty_c: torch.Tensor
    empty_app_mean: torch.Tensor
    empty_app_var: torch.Tensor
    empty_ready: torch.Tensor
    slot_full_frames: torch.Tensor
    slot_dropped_tracks: torch.Tensor

    @classmethod
    def empty(
        cls,
        batch_size: int,
        num_slots: int,
        dim: int,
        appearance_dim: int,
        num_classes: int,
        init_log_var: float,
        device: torch.device,
        empty_init_var: Optional[torch.Tensor] = None,
    ) -> TrackState:
        """All N = ``num_slots`` slots free (nothing alive, ids -1, next id 0); the free slots' appearance variance
        is exp(``init_log_var``) (a placeholder: a new track's Gaussian is set when it starts, §3.4). The empty
        track's LSTM state starts at zero and its variance at ``empty_init_var`` (A,) (ones when None)."""
        b, n, d, a = batch_size, num_slots, dim, appearance_dim

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, device=device)

        return cls(
            h=zeros(b, n, d),
            c=zeros(b, n, d),
            alive=torch.zeros(b, n, dtype=torch.bool, device=device),
            boxes=zeros(b, n, 4),
            app_mean=zeros(b, n, a),
            app_var=torch.full((b, n, a), math.exp(init_log_var), device=device),
            app_last=zeros(b, n, a),
            class_log_prob_sum=zeros(b, n, num_classes + 1),
            held_count=zeros(b, n),
            ids=torch.full((b, n), -1, dtype=torch.long, device=device),
            identity=torch.full((b, n), -1, dtype=torch.long, device=device),
            det_class=torch.full((b, n), -1, dtype=torch.long, device=device),
            next_id=torch.zeros(b, dtype=torch.long, device=device),
            empty_h=zeros(b, d),
            empty_c=zeros(b, d),
            empty_app_mean=zeros(b, a),
            empty_app_var=(
                torch.ones(b, a, device=device) if empty_init_var is None else empty_init_var.expand(b, a).clone()
            ),
            empty_ready=torch.zeros(b, dtype=torch.bool, device=device),
            slot_full_frames=torch.zeros(b, dtype=torch.long, device=device),
            slot_dropped_tracks=torch.zeros(b, dtype=torch.long, device=device),
        )


@dataclass
class FrameOutput:
    """What one step produced. Association tensors cover the N' slots processed by the GNN (the first N' of
    the N slots): match_logits (B, N', M), edge_mask (B, N', M), prev_alive and prev_identity (B, N');
    new_logits (B, M); det_valid (B, M); new (B, M) decision; class_logits (B, N, K+1) and alive (B, N) after
    initialisation; mask_logits (P, h, w) of the P tracks holding a detection this frame, mask_index (P, 2) =
    (video, slot), mask_det (P,) the detection each holds."""

    match_logits: torch.Tensor
    edge_mask: torch.Tensor
    prev_alive: torch.Tensor
    prev_identity: torch.Tensor
    new_logits: torch.Tensor
    det_valid: torch.Tensor
    new: torch.Tensor
    class_logits: torch.Tensor
    alive: torch.Tensor
    mask_logits: torch.Tensor
    mask_index: torch.Tensor
    mask_det: torch.Tensor
