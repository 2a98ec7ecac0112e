"""The online tracker of RGNN-VIS: track memory, one frame of the recurrent GNN, association, track
initialisation, appearance update, scoring and mask re-weighting (§3.1-3.4).

The same :meth:`RGNNTracker.step` runs at inference (B = 1 video) and in stage-2 training (B clips in
parallel, §3.5 "as we would do during inference"). Track memory is a fixed-size padded tensor of
``MAX_TRACKS`` slots per video with an ``alive`` mask (App. A.3); tracks without a matching detection stay
alive but *inactive* (no mask this frame) and keep being updated by the GNN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.structures import Instances
from torch import nn

from .appearance import AppearanceUpdate, gaussian_log_likelihood, nix2_update
from .association import gnn_association, heuristic_association
from .detector import crop_masks
from .graph import TrackDetectionGNN
from .heads import AssociationHeads, MaskReweighting, TrackScoringHead
from .recurrent import build_gate

__all__ = ["FrameDetections", "TrackState", "FrameOutput", "RGNNTracker", "pairwise_box_iou"]


def pairwise_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched IoU. a: (B, N, 4), b: (B, M, 4) XYXY -> (B, N, M)."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[:, :, None, :2], b[:, None, :, :2])
    rb = torch.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    return inter / (area_a[:, :, None] + area_b[:, None, :] - inter).clamp(min=1e-6)


@dataclass
class FrameDetections:
    """Detections of one frame for B videos, padded to M: boxes (B, M, 4) XYXY input pixels, class_probs
    (B, M, K+1), scores (B, M), masks (B, M, h, w) on the prototype grid, appearance (B, M, A), valid (B, M),
    image_sizes (B, 2) = (h, w) of the resized input before padding."""

    boxes: torch.Tensor
    class_probs: torch.Tensor
    scores: torch.Tensor
    masks: torch.Tensor
    appearance: torch.Tensor
    valid: torch.Tensor
    image_sizes: torch.Tensor

    @cached_property
    def class_log_probs(self) -> torch.Tensor:
        """(B, M, K+1) class log-probabilities clamped at log 1e-4 (the GNN and track-scoring input)."""
        return self.class_probs.clamp(min=1e-4).log()

    @classmethod
    def from_instances(
        cls, dets: Sequence[Instances], appearance: Sequence[torch.Tensor], image_sizes: Sequence[Tuple[int, int]]
    ) -> FrameDetections:
        """Pads per-image detector outputs (see :class:`~vis_rgnn.detector.YolactDetector`). Detections with a
        ``valid`` field (the detector's fixed-size output) are stacked as they are, without host syncs; others
        count as all valid. appearance: (M_i, A) per image."""
        ref = dets[0].class_probs
        sizes = torch.as_tensor(image_sizes, dtype=ref.dtype).view(len(dets), 2).to(ref.device, non_blocking=True)
        if all(d.has("valid") for d in dets) and len({len(d) for d in dets}) == 1:
            return cls(
                boxes=torch.stack([d.pred_boxes.tensor for d in dets]),
                class_probs=torch.stack([d.class_probs for d in dets]),
                scores=torch.stack([d.scores for d in dets]),
                masks=torch.stack([d.pred_masks for d in dets]),
                appearance=torch.stack(list(appearance)),
                valid=torch.stack([d.valid for d in dets]),
                image_sizes=sizes,
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
        )
        for i, d in enumerate(dets):
            n = len(d)
            out.boxes[i, :n] = d.pred_boxes.tensor
            out.class_probs[i, :n] = d.class_probs
            out.scores[i, :n] = d.scores
            out.masks[i, :n] = d.pred_masks
            out.valid[i, :n] = d.valid if d.has("valid") else True
        return out


@dataclass
class TrackState:
    """Track memory of B videos with N slots: embeddings h, c (B, N, D); alive (B, N); last box (B, N, 4);
        appearance Gaussian mean / var (B, N, A); appearance of the last assigned detection app_last (B, N, A, the
        track feature of the MaskTrack R-CNN rule); sum of the class log-probabilities of the detections the track
        held, class_log_prob_sum (B, N, K+1), and their number held_count (B, N); track ids (B, N, -1 = free) and the
        next id to give, next_id (B,) int64 (on the device:
    new ids are assigned without host syncs);
        training identity (B, N, annotation id or -1); confidence 1 - p(background) (B, N) for eviction; class of
        the last assigned detection (B, N)."""

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
    confidence: torch.Tensor
    det_class: torch.Tensor
    next_id: Optional[torch.Tensor] = None


@dataclass
class FrameOutput:
    """What one step produced. Association tensors cover the N' slots processed by the GNN (the first N' of
    the N slots): match_logits (B, N', M), edge_mask (B, N', M), prev_alive and prev_identity (B, N');
    new_logits (B, M); new (B, M) decision; class_logits (B, N, K+1) and alive (B, N) after initialisation;
    mask_logits (P, h, w)
    of the P tracks holding a detection this frame, mask_index (P, 2) = (video, slot), mask_det (P,)."""

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


class RGNNTracker(nn.Module):
    """Everything of stage 2 except the appearance network: GNN, recurrent gate, heads, appearance update."""

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        appearance_dim: int,
        use_appearance: bool = True,
        dim: int = 128,
        gate_hidden: int = 32,
        residual_hidden: int = 32,
        num_blocks: int = 2,
        residual_blocks: bool = True,
        aggregation: str = "dense",
        logit_bias_init: float = -2.1,
        gating: str = "lstm",
        association: str = "gnn",
        heuristic: Optional[dict] = None,
        max_tracks: int = 24,
        init_threshold: float = -2.0,
        train_init_threshold: float = -2.0,
        inactive_threshold: float = 0.0,
        init_log_var: float = -7.0,
        appearance_update: str = "learned",
        mask_embed_channels: int = 16,
        mask_hidden_channels: int = 16,
        mask_residual: bool = True,
        mask_stride: int = 4,
        scoring_evidence: bool = False,
    ):
        super().__init__()
        self.num_classes, self.dim, self.appearance_dim = num_classes, dim, appearance_dim
        self.use_appearance, self.association, self.heuristic = use_appearance, association, heuristic or {}
        if association not in ("gnn", "heuristic"):
            raise ValueError(f"unknown association {association!r}; use 'gnn' or 'heuristic'")
        self.max_tracks, self.mask_stride = max_tracks, mask_stride
        self.init_threshold, self.train_init_threshold = init_threshold, train_init_threshold
        self.inactive_threshold, self.init_log_var = inactive_threshold, init_log_var
        self.gnn = TrackDetectionGNN(
            num_classes, dim, gate_hidden, residual_hidden, num_blocks, residual_blocks, aggregation
        )
        self.gate = build_gate(gating, dim)
        self.association_heads = AssociationHeads(dim, logit_bias_init)
        self.scoring = TrackScoringHead(dim, num_classes, scoring_evidence)
        if appearance_update not in ("learned", "constant_variance"):
            raise ValueError(
                f"MODEL.RGNN.APPEARANCE.UPDATE must be 'learned' or 'constant_variance', got {appearance_update!r}"
            )
        self.appearance_update = AppearanceUpdate(dim, init_log_var, appearance_update == "learned")
        self.mask_reweighting = MaskReweighting(dim, mask_embed_channels, mask_hidden_channels, mask_residual)
        # The empty track's appearance Gaussian (its "similarity" input to n_j, §3.1), learned.
        self.empty_app_mean = nn.Parameter(torch.zeros(appearance_dim))
        self.empty_app_log_var = nn.Parameter(torch.zeros(appearance_dim))

    @classmethod
    def from_config(cls, cfg, appearance_dim: int, mask_stride: int):
        r = cfg.MODEL.RGNN
        h = r.HEURISTIC
        return {
            "num_classes": cfg.MODEL.NUM_CLASSES,
            "appearance_dim": appearance_dim,
            "use_appearance": r.APPEARANCE.ENABLED,
            "dim": r.GNN.DIM,
            "gate_hidden": r.GNN.GATE_HIDDEN,
            "residual_hidden": r.GNN.RESIDUAL_HIDDEN,
            "num_blocks": r.GNN.NUM_BLOCKS,
            "residual_blocks": r.GNN.RESIDUAL_BLOCKS,
            "aggregation": r.GNN.AGGREGATION,
            "logit_bias_init": r.GNN.LOGIT_BIAS_INIT,
            "gating": r.GATING,
            "association": r.ASSOCIATION,
            "heuristic": {
                "temperature": h.APPEARANCE_TEMPERATURE,
                "score_weight": h.SCORE_WEIGHT,
                "iou_weight": h.IOU_WEIGHT,
                "class_weight": h.CLASS_WEIGHT,
                "score_thresh": h.SCORE_THRESH,
            },
            "max_tracks": r.MAX_TRACKS,
            "init_threshold": r.INIT_THRESHOLD,
            "train_init_threshold": r.TRAIN_INIT_THRESHOLD,
            "inactive_threshold": r.INACTIVE_THRESHOLD,
            "init_log_var": r.APPEARANCE.INIT_LOG_VAR,
            "appearance_update": r.APPEARANCE.UPDATE,
            "mask_embed_channels": r.MASK_EMBED_CHANNELS,
            "mask_hidden_channels": r.MASK_HIDDEN_CHANNELS,
            "mask_residual": r.MASK_RESIDUAL,
            "mask_stride": mask_stride,
            "scoring_evidence": r.SCORING_EVIDENCE,
        }

    def init_state(self, batch_size: int, device: torch.device) -> TrackState:
        b, n, d, a = batch_size, self.max_tracks, self.dim, self.appearance_dim

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, device=device)

        return TrackState(
            h=zeros(b, n, d),
            c=zeros(b, n, d),
            alive=torch.zeros(b, n, dtype=torch.bool, device=device),
            boxes=zeros(b, n, 4),
            app_mean=zeros(b, n, a),
            app_var=torch.full((b, n, a), math.exp(self.init_log_var), device=device),
            app_last=zeros(b, n, a),
            class_log_prob_sum=zeros(b, n, self.num_classes + 1),
            held_count=zeros(b, n),
            ids=torch.full((b, n), -1, dtype=torch.long, device=device),
            identity=torch.full((b, n), -1, dtype=torch.long, device=device),
            confidence=zeros(b, n),
            det_class=torch.full((b, n), -1, dtype=torch.long, device=device),
            next_id=torch.zeros(b, dtype=torch.long, device=device),
        )

    # ------------------------------------------------------------------------------------------ graph inputs
    def graph_inputs(self, state: TrackState, dets: FrameDetections, n_used: int):
        """Raw edge / new-track edge / detection inputs of the first GNN block (§3.1, App. A.2).

        edges (B, N', M, K+4+2) = [det class log-probs, box offsets of the detection w.r.t. the track's last box
        (dx/w, dy/h, log w'/w, log h'/h), IoU, appearance log-likelihood]; empty_edges (B, M, K+4+1) = [class
        log-probs, detection box normalised by the image size (cx, cy, w, h), log-likelihood under the empty
        track's Gaussian]; dets (B, M, K+4) = [class log-probs, normalised box]. Returns them and the IoU.
        """
        tb, db = state.boxes[:, :n_used], dets.boxes
        iou = pairwise_box_iou(tb, db)
        twh = (tb[..., 2:] - tb[..., :2]).clamp(min=1.0)
        dwh = (db[..., 2:] - db[..., :2]).clamp(min=1.0)
        tc, dc = (tb[..., :2] + tb[..., 2:]) / 2, (db[..., :2] + db[..., 2:]) / 2
        offsets = torch.cat(
            [(dc[:, None] - tc[:, :, None]) / twh[:, :, None], (dwh[:, None] / twh[:, :, None]).log()], dim=-1
        )
        size = dets.image_sizes.flip(-1)[:, None, :]  # (B, 1, 2) as (w, h)
        det_box = torch.cat([dc / size, dwh / size], dim=-1)
        if self.use_appearance:
            x = dets.appearance
            ll = gaussian_log_likelihood(x[:, None], state.app_mean[:, :n_used, None], state.app_var[:, :n_used, None])
            empty_ll = gaussian_log_likelihood(x, self.empty_app_mean, self.empty_app_log_var.exp())
        else:
            ll, empty_ll = iou.new_zeros(iou.shape), iou.new_zeros(dets.scores.shape)
        # Class scores enter as log-probabilities (clamped at 1e-4): a weak segmenter's softmax is flat (synthetic
        # data: the true class averages p = 0.22 against 0.33 for the best one), and as probabilities that
        # evidence is a small ripple next to the box offsets and embeddings the same Linear layers read; with
        # probabilities the scoring head learned only the class prior (vis_rgnn/README.md, Results).
        probs = dets.class_log_probs
        edges = torch.cat([probs[:, None].expand(-1, n_used, -1, -1), offsets, iou[..., None], ll[..., None]], dim=-1)
        empty_edges = torch.cat([probs, det_box, empty_ll[..., None]], dim=-1)
        det_raw = torch.cat([probs, det_box], dim=-1)
        return edges, empty_edges, det_raw, iou

    # ---------------------------------------------------------------------------------------------- one step
    def step(
        self, state: TrackState, dets: FrameDetections, det_identity: Optional[torch.Tensor] = None
    ) -> FrameOutput:
        """Process one frame for all B videos and update ``state`` (its tensors are replaced, not modified, so
        gradients flow through time). ``det_identity`` (B, M): annotation id per detection (training only)."""
        if self.training:  # B clips with gradients: the GNN skips the slots after the last alive one (1 sync)
            used = state.alive.any(dim=0).nonzero()
            n_used = int(used.max()) + 1 if len(used) else 0
        else:  # online inference: all N slots, fixed size, no host sync (padded slots are masked, App. A.3)
            n_used = state.alive.shape[1]
        prev_alive = state.alive[:, :n_used].clone()
        prev_identity = state.identity[:, :n_used].clone()

        # §3.1 + eq. (3): GNN over tracks and detections, association logits, gated track embeddings.
        edges, empty_edges, det_raw, iou = self.graph_inputs(state, dets, n_used)
        g = self.gnn(state.h[:, :n_used], det_raw, edges, empty_edges, prev_alive, dets.valid)
        match_logits, new_logits = self.association_heads(g["edges"], g["empty_edges"])
        h, c = self.gate(g["tracks"], state.h[:, :n_used], state.c[:, :n_used])
        edge_mask = prev_alive[:, :, None] & dets.valid[:, None, :]

        init_threshold = self.train_init_threshold if self.training else self.init_threshold
        if self.association == "gnn":
            assigned, new = gnn_association(
                match_logits, new_logits, edge_mask, dets.valid, self.inactive_threshold, init_threshold
            )
        else:
            assigned, new = heuristic_association(
                dets.scores,
                dets.class_probs[..., : self.num_classes].argmax(-1),
                dets.appearance,
                dets.valid,
                state.app_last[:, :n_used],
                state.det_class[:, :n_used],
                prev_alive,
                iou,
                **self.heuristic,
            )
        holder = self._update_tracks(state, dets, h, c, assigned, prev_alive)
        holder = self._start_tracks(state, dets, g["empty_edges"], new, new_logits, holder, det_identity)
        class_logits = self.scoring(state.h, state.class_log_prob_sum / state.held_count.clamp(min=1)[..., None])
        state.confidence = torch.where(state.alive, 1 - class_logits.detach().softmax(-1)[..., -1], 0.0)

        # §3.2, Table 3: re-weight the mask of every track that holds a detection this frame. Reading their
        # number P is the one host sync of an inference step (it sizes the CNN's batch and the frame's output).
        mask_index = (holder >= 0).nonzero()
        mb, ms = mask_index[:, 0], mask_index[:, 1]
        mask_det = holder[mb, ms]
        det_masks = dets.masks[mb, mask_det]
        box_masks = crop_masks(torch.ones_like(det_masks), dets.boxes[mb, mask_det] / self.mask_stride)
        mask_logits = self.mask_reweighting(state.h[mb, ms], det_masks, box_masks)
        return FrameOutput(
            match_logits=match_logits,
            edge_mask=edge_mask,
            prev_alive=prev_alive,
            prev_identity=prev_identity,
            new_logits=new_logits,
            det_valid=dets.valid,
            new=new,
            class_logits=class_logits,
            alive=state.alive,
            mask_logits=mask_logits,
            mask_index=mask_index,
            mask_det=mask_det,
        )

    def _update_tracks(
        self,
        state: TrackState,
        dets: FrameDetections,
        h: torch.Tensor,
        c: torch.Tensor,
        assigned: torch.Tensor,
        prev_alive: torch.Tensor,
    ) -> torch.Tensor:
        """Write the gated embeddings h, c (B, N', D) of the N' processed slots and, for tracks with an
        assigned detection (``assigned`` (B, N'), -1 = inactive), the appearance update (4a-b) with that
        detection, its box and class. Returns the detection held by every slot (B, N), -1 for none."""
        b_size, n_slots = state.alive.shape
        n_used, m = assigned.shape[1], dets.valid.shape[1]
        active = assigned >= 0
        idx = assigned.clamp(min=0)

        def take(x: torch.Tensor) -> torch.Tensor:  # (B, M, F) -> (B, N', F): each track's assigned detection
            if m == 0:
                return x.new_zeros(b_size, n_used, x.shape[-1])
            return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))

        def write(old: torch.Tensor, new: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
            """Slots < N' take ``new`` where ``where`` (B, N') is set; the other slots keep ``old``."""
            where = where.view(*where.shape, *[1] * (new.dim() - 2))
            return torch.cat([torch.where(where, new, old[:, :n_used]), old[:, n_used:]], dim=1)

        app_mean, app_var = state.app_mean[:, :n_used], state.app_var[:, :n_used]
        if self.use_appearance:
            alpha, beta, s2 = self.appearance_update(h)
            app_mean, app_var = nix2_update(app_mean, app_var, take(dets.appearance), s2, alpha, beta)
        state.app_mean = write(state.app_mean, app_mean, active)
        state.app_var = write(state.app_var, app_var.clamp(min=1e-8), active)
        state.app_last = write(state.app_last, take(dets.appearance), active)
        log_probs = take(dets.class_log_probs)
        state.class_log_prob_sum = write(
            state.class_log_prob_sum, state.class_log_prob_sum[:, :n_used] + log_probs, active
        )
        state.held_count = write(state.held_count, state.held_count[:, :n_used] + 1, active)
        state.h = torch.cat([torch.where(prev_alive[..., None], h, 0.0), state.h[:, n_used:]], dim=1)
        state.c = torch.cat([torch.where(prev_alive[..., None], c, 0.0), state.c[:, n_used:]], dim=1)
        state.boxes = write(state.boxes, take(dets.boxes), active)
        det_class = take(dets.class_probs[..., : self.num_classes].argmax(-1, keepdim=True))[..., 0]
        state.det_class = write(state.det_class, det_class, active)
        return torch.cat([assigned, assigned.new_full((b_size, n_slots - n_used), -1)], dim=1)

    def _start_tracks(
        self,
        state: TrackState,
        dets: FrameDetections,
        empty_edges: torch.Tensor,
        new: torch.Tensor,
        new_logits: torch.Tensor,
        holder: torch.Tensor,
        det_identity: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Start a track for every detection with ``new`` (B, M) set (§3.1): its embedding is the new-track
        embedding n_j (``empty_edges`` (B, M, D)) passed through the gate from a zero state; its appearance
        Gaussian is centred on the detection with the fixed initial variance (§3.4); its id is the video's next
        one, in the order of decreasing new-track logit. Dense writes over the (B, N) slots, no host syncs.
        Returns ``holder`` (B, N) updated with the initialising detections."""
        if new.shape[1] == 0:
            return holder
        slot_det, slot_rank = self._allocate(state.alive, state.confidence, new, new_logits, holder >= 0)
        starts = slot_det >= 0  # (B, N)
        det = slot_det.clamp(min=0)

        def take(x: torch.Tensor) -> torch.Tensor:  # (B, M, F) -> (B, N, F): each slot's initialising detection
            return torch.gather(x, 1, det[..., None].expand(-1, -1, x.shape[-1]))

        def put(old: torch.Tensor, value) -> torch.Tensor:
            where = starts.view(*starts.shape, *[1] * (old.dim() - 2))
            return torch.where(where, value, old)

        zeros = state.h.new_zeros(state.h.shape)
        h_new, c_new = self.gate(take(empty_edges), zeros, zeros)
        state.h, state.c = put(state.h, h_new), put(state.c, c_new)
        app = take(dets.appearance)
        state.app_mean, state.app_last = put(state.app_mean, app), put(state.app_last, app)
        state.app_var = put(state.app_var, math.exp(self.init_log_var))
        state.class_log_prob_sum = put(state.class_log_prob_sum, take(dets.class_log_probs))
        state.held_count = put(state.held_count, 1.0)
        state.boxes = put(state.boxes, take(dets.boxes))
        det_class = dets.class_probs[..., : self.num_classes].argmax(-1, keepdim=True)
        state.det_class = put(state.det_class, take(det_class)[..., 0])
        alive = state.alive | starts  # an evicted slot is re-used by the new track at once
        identity = self._new_identity(state.identity, alive, starts, det, det_identity)
        state.identity = put(state.identity, identity)
        state.ids = put(state.ids, state.next_id[:, None] + slot_rank)
        state.next_id = state.next_id + starts.sum(dim=1)
        state.alive = alive
        return put(holder, slot_det)

    @staticmethod
    def _allocate(
        alive: torch.Tensor, confidence: torch.Tensor, new: torch.Tensor, new_logits: torch.Tensor, active: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Slots for the new tracks (B, M) ``new``, best new-track logit first: free slots in index order, then,
        when all ``MAX_TRACKS`` slots are taken, the inactive (not ``active``) tracks by increasing confidence
        (evicted); a new track that finds no slot is dropped. Sorting on fixed-size tensors, no host syncs.

        Returns slot_det (B, N): the detection starting a track in each slot or -1, and slot_rank (B, N): its
        rank among the video's new tracks of this frame (0 = best logit) or -1."""
        b_size, n_slots = alive.shape
        m = new.shape[1]
        key = torch.where(new, new_logits.detach(), float("-inf"))
        cand_order = key.argsort(dim=1, descending=True, stable=True)  # (B, M) candidates first
        free, evictable = ~alive, alive & ~active
        # Slot priority: free by index, then evictable by confidence (two stable sorts = lexicographic order).
        index = torch.arange(n_slots, device=alive.device)
        within = torch.where(free, index.to(confidence.dtype), confidence.detach())
        by_within = within.argsort(dim=1, stable=True)
        category = torch.where(free, 0, torch.where(evictable, 1, 2))
        slot_order = torch.gather(by_within, 1, torch.gather(category, 1, by_within).argsort(dim=1, stable=True))
        k = min(n_slots, m)
        rank = torch.arange(k, device=alive.device)
        limit = torch.minimum(new.sum(dim=1), (free | evictable).sum(dim=1))  # (B,) tracks started
        taken = rank[None] < limit[:, None]  # (B, k)
        slot_det = torch.full((b_size, n_slots), -1, dtype=torch.long, device=alive.device)
        slot_rank = torch.full_like(slot_det, -1)
        slot_det.scatter_(1, slot_order[:, :k], torch.where(taken, cand_order[:, :k], -1))
        slot_rank.scatter_(1, slot_order[:, :k], torch.where(taken, rank[None], -1))
        return slot_det, slot_rank

    @staticmethod
    def _new_identity(
        identity: torch.Tensor,
        alive: torch.Tensor,
        starts: torch.Tensor,
        det: torch.Tensor,
        det_identity: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Training identity (B, N) of the slots in ``starts`` = annotation of the initialising detection ``det``
        (§3.5). An annotation is owned by its first track: when another alive slot (``alive`` after this frame's
        starts) already carries it in ``identity`` (before this frame's starts), the new track is a duplicate
        (identity -1). Tracks started in the same frame from one annotation all take it."""
        if det_identity is None:
            return torch.full_like(identity, -1)
        ann = torch.where(starts, torch.gather(det_identity, 1, det), -1)
        n = identity.shape[1]
        others = alive[:, None, :] & ~torch.eye(n, dtype=torch.bool, device=alive.device)[None]  # (B, N, N)
        owned = (others & (identity[:, None, :] == ann[:, :, None])).any(dim=-1)
        return torch.where((ann >= 0) & owned, -1, ann)
