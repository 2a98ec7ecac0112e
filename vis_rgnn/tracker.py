"""The online tracker of RGNN-VIS: one frame of the recurrent GNN over the track memory -- association, track
update and initialisation, appearance update, scoring and mask re-weighting (§3.1-3.4).

The same :meth:`RGNNTracker.step` runs at inference (B = 1 video) and in stage-2 training (B clips in
parallel, §3.5 "as we would do during inference"). Track memory (:class:`~vis_rgnn.track_state.TrackState`) is
a fixed-size padded tensor of ``MAX_TRACKS`` slots per video with an ``alive`` mask (App. A.3); tracks without a
matching detection stay alive but *inactive* (no mask this frame, box zeroed) and keep being updated by the GNN.
The tracker is the authors' release (``rgnnvis/models/rgnn.py``; docs/rgnn_release_port.md, "Ported"): the empty
track has its own recurrent memory and appearance Gaussian, a new track starts from its detection's final GNN
vertex. Graph inputs: :mod:`vis_rgnn.graph_inputs`; slot allocation: :mod:`vis_rgnn.slots`; training identities:
:mod:`vis_rgnn.track_identities`.

Shapes: B videos, N track slots, N' <= N the leading slots the GNN processes this frame, M detection slots
(padded, ``valid`` mask), K+1 classes (background last), D track embedding dim, A appearance dim, P tracks
holding a detection this frame.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from .appearance import AppearanceUpdate
from .association import gnn_association, heuristic_association
from .graph import TrackDetectionGNN
from .graph_inputs import graph_inputs
from .heads import AssociationHeads, MaskReweighting, TrackScoringHead
from .recurrent import build_gate
from .slots import allocate_slots
from .track_identities import new_track_identity
from .track_state import FrameDetections, FrameOutput, TrackState

__all__ = ["RGNNTracker"]


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
        logit_bias_init: float = -2.1,
        gating: str = "lstm",
        association: str = "gnn",
        heuristic: Optional[dict] = None,
        max_tracks: int = 24,
        init_threshold: float = -2.0,
        train_init_threshold: float = -2.0,
        inactive_threshold: float = -2.0,
        init_log_var: float = -7.0,
        appearance_update: str = "learned",
        mask_embed_channels: int = 16,
        mask_hidden_channels: int = 16,
        mask_residual: bool = True,
        mask_stride: int = 4,
        scoring_evidence: bool = False,
        mask_reweight_input: str = "ours",
        mask_box_weight: float = 10.0,
    ):
        super().__init__()
        for key, value, allowed in (
            ("ASSOCIATION", association, ("gnn", "heuristic")),
            ("APPEARANCE.UPDATE", appearance_update, ("learned", "constant_variance")),
        ):
            if value not in allowed:
                raise ValueError(f"MODEL.RGNN.{key} must be one of {allowed}, got {value!r}")
        self.num_classes, self.dim, self.appearance_dim = num_classes, dim, appearance_dim
        self.use_appearance, self.association, self.heuristic = use_appearance, association, heuristic or {}
        self.max_tracks, self.mask_stride = max_tracks, mask_stride
        self.init_threshold, self.train_init_threshold = init_threshold, train_init_threshold
        self.inactive_threshold, self.init_log_var = inactive_threshold, init_log_var
        self.gnn = TrackDetectionGNN(num_classes, dim, gate_hidden, residual_hidden, num_blocks, residual_blocks)
        self.gate = build_gate(gating, dim)
        self.association_heads = AssociationHeads(dim, logit_bias_init)
        self.scoring = TrackScoringHead(dim, num_classes, scoring_evidence)
        self.appearance_update = AppearanceUpdate(
            dim, init_log_var, appearance_dim, learn_variance=appearance_update == "learned"
        )
        self.mask_reweighting = MaskReweighting(
            dim, mask_embed_channels, mask_hidden_channels, mask_residual, mask_reweight_input, mask_box_weight
        )
        # The release's TrackDescriptor: the empty track's own LSTM (memory_layers['background']) and the raw
        # initial variance of its Gaussian (init_var_background; variance = softplus of it).
        self.empty_gate = build_gate(gating, dim)
        self.empty_init_var = nn.Parameter(torch.full((appearance_dim,), float(init_log_var)))

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
            "mask_reweight_input": r.MASK_REWEIGHT_INPUT,
            "mask_box_weight": r.DETECTION_MASK_BOX_WEIGHT,
        }

    def init_state(self, batch_size: int, device: torch.device) -> TrackState:
        """Empty track memory of ``batch_size`` videos with ``MAX_TRACKS`` slots."""
        return TrackState.empty(
            batch_size,
            self.max_tracks,
            self.dim,
            self.appearance_dim,
            self.num_classes,
            self.init_log_var,
            device,
            empty_init_var=F.softplus(self.empty_init_var).to(device),
        )

    def empty_appearance(self, state: TrackState, dets: FrameDetections) -> Optional[Tuple[torch.Tensor, ...]]:
        """(mean, variance) (B, A) of the empty track's appearance Gaussian this frame, None when the appearance
        model is disabled: the state's Gaussian, whose mean is the frame's background descriptor until frame 0 has
        been processed (the release's ``get_init_state``)."""
        if not self.use_appearance:
            return None
        mean = torch.where(state.empty_ready[:, None], state.empty_app_mean, dets.background_appearance)
        return mean, state.empty_app_var

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
        edges, empty_edges, det_raw, iou = graph_inputs(state, dets, n_used, self.empty_appearance(state, dets))
        g = self.gnn(state.h[:, :n_used], det_raw, edges, empty_edges, prev_alive, dets.valid, empty=state.empty_h)
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
        self._update_empty_track(state, dets, g["empty"])
        holder = self._update_tracks(state, dets, h, c, assigned, prev_alive)
        holder = self._start_tracks(state, dets, g["dets"], new, holder, det_identity)
        class_logits = self.scoring(state.h, state.class_log_prob_sum / state.held_count.clamp(min=1)[..., None])

        # §3.2, Table 3: re-weight the mask of every track that holds a detection this frame. Reading their
        # number P is the one host sync of an inference step (it sizes the CNN's batch and the frame's output).
        mask_index = (holder >= 0).nonzero()
        mb, ms = mask_index[:, 0], mask_index[:, 1]
        mask_det = holder[mb, ms]
        det_masks = dets.masks[mb, mask_det]
        mask_logits = self.mask_reweighting.from_detections(
            state.h[mb, ms], det_masks, dets.boxes[mb, mask_det], self.mask_stride
        )
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

    def _update_empty_track(self, state: TrackState, dets: FrameDetections, empty_vertex: torch.Tensor) -> None:
        """The empty track t_0 (§3.1: "processed with its own set of weights"; the release's
        ``TrackDescriptor.forward``, ``background``): its LSTM reads its final GNN vertex (B, D); its Gaussian is
        updated every frame with the frame's background descriptor (B, A) at rates predicted from its new output,
        frame 0's mean being that descriptor."""
        state.empty_h, state.empty_c = self.empty_gate(empty_vertex, state.empty_h, state.empty_c)
        if self.use_appearance:
            bg = dets.background_appearance
            mean = torch.where(state.empty_ready[:, None], state.empty_app_mean, bg)
            state.empty_app_mean, state.empty_app_var = self.appearance_update.update(
                mean, state.empty_app_var, bg, state.empty_h
            )
        state.empty_ready = torch.ones_like(state.empty_ready)

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
        detection, its box and class. A processed track without a detection gets box 0 (the release's
        ``TrackModule``: its IoU with any detection is 0, also in the heuristic association of Table 1, which
        then re-finds an inactive track by class and appearance alone). Returns the detection held by every slot
        (B, N), -1 for none."""
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
            app_mean, app_var = self.appearance_update.update(app_mean, app_var, take(dets.appearance), h)
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
        state.boxes = write(state.boxes, torch.where(active[..., None], take(dets.boxes), 0.0), torch.ones_like(active))
        det_class = take(dets.class_probs[..., : self.num_classes].argmax(-1, keepdim=True))[..., 0]
        state.det_class = write(state.det_class, det_class, active)
        return torch.cat([assigned, assigned.new_full((b_size, n_slots - n_used), -1)], dim=1)

    def _start_tracks(
        self,
        state: TrackState,
        dets: FrameDetections,
        det_vertices: torch.Tensor,
        new: torch.Tensor,
        holder: torch.Tensor,
        det_identity: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Start a track for every detection with ``new`` (B, M) set (§3.1 "we initialize a new track with the
        embedding of that detection", the release's ``rgnn.py``): its embedding is the detection's final GNN
        vertex ``det_vertices`` (B, M, D) passed through the gate from a zero state; its appearance Gaussian is
        the placeholder N(0, softplus(init_var)) after one appearance update with the detection (§3.4,
        :meth:`~vis_rgnn.appearance.AppearanceUpdate.initial`); it takes the lowest free slot and the video's next
        id in detection order (:func:`~vis_rgnn.slots.allocate_slots`). Dense writes over the (B, N) slots, no
        host syncs. Returns ``holder`` (B, N) updated with the initialising detections."""
        if new.shape[1] == 0:
            return holder
        slot_det, slot_rank = allocate_slots(state.alive, new)
        starts = slot_det >= 0  # (B, N)
        det = slot_det.clamp(min=0)

        def take(x: torch.Tensor) -> torch.Tensor:  # (B, M, F) -> (B, N, F): each slot's initialising detection
            return torch.gather(x, 1, det[..., None].expand(-1, -1, x.shape[-1]))

        def put(old: torch.Tensor, value) -> torch.Tensor:
            where = starts.view(*starts.shape, *[1] * (old.dim() - 2))
            return torch.where(where, value, old)

        zeros = state.h.new_zeros(state.h.shape)
        h_new, c_new = self.gate(take(det_vertices), zeros, zeros)
        state.h, state.c = put(state.h, h_new), put(state.c, c_new)
        app = take(dets.appearance)
        app_mean, app_var = self.appearance_update.initial(app, h_new)
        state.app_mean, state.app_last = put(state.app_mean, app_mean), put(state.app_last, app)
        state.app_var = put(state.app_var, app_var.clamp(min=1e-8))
        state.class_log_prob_sum = put(state.class_log_prob_sum, take(dets.class_log_probs))
        state.held_count = put(state.held_count, 1.0)
        state.boxes = put(state.boxes, take(dets.boxes))
        det_class = dets.class_probs[..., : self.num_classes].argmax(-1, keepdim=True)
        state.det_class = put(state.det_class, take(det_class)[..., 0])
        alive = state.alive | starts
        identity = new_track_identity(state.identity, alive, starts, det, det_identity)
        state.identity = put(state.identity, identity)
        state.ids = put(state.ids, state.next_id[:, None] + slot_rank)
        started = starts.sum(dim=1)
        dropped = new.sum(dim=1) - started  # (B,) new tracks that found no free slot
        state.slot_full_frames = state.slot_full_frames + (dropped > 0).long()
        state.slot_dropped_tracks = state.slot_dropped_tracks + dropped
        state.next_id = state.next_id + started
        state.alive = alive
        return put(holder, slot_det)
