"""The online step of VisSTG (§3.5, §3.6) as pure functions on fixed-size tensors. :meth:`.meta_arch.VisSTG.step`
runs the graph and the heads on frame t, then :func:`track_frame` (steps 1-4) and :func:`frame_to_host` (step 5):

1. decode frame t's detections (:meth:`.detection_head.CenterNetHead.inference`: peaks, top-k, class-aware NMS,
   ``MAX_DETECTIONS`` padded slots with a ``valid`` mask) and their masks (eq. (4), ``VisSTG.predict_masks``);
2. score the (reference, detection) pairs with the association cue (:mod:`.association`) and :func:`match` them
   one-to-one (class pruning, greedy by descending score);
3. fuse the mask of the warped reference kernel (eq. (5), §3.4), or of the stored kernel of a memory instance
   (:func:`warp_kernels_from_memory`);
4. :func:`assign_track_ids` and :func:`next_references`: the reference instances of frame t+1 (the occlusion
   memory keeps unmatched instances for Δt frames);
5. :func:`frame_to_host`: the frame's outputs in one device-to-host copy.

Nothing here reads a device value back before step 5 (no host sync): the greedy rules are fixed-point
iterations (:mod:`.sync_free`), track ids come from a device counter, the reference set is compacted by a
stable sort. Shapes: N reference instances, D detection slots (``valid`` mask), P = 169 kernel parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode
from detectron2.structures import Boxes, Instances

from projects.modeling.online import to_host

from .association import Association, FrameInputs
from .detection_head import CenterNetHead, Detections
from .graph import GraphEdges
from .state import ReferenceSet
from .sync_free import EXACT, gather_at_cells_static, greedy_match_fixed_point, greedy_nms_fixed_point, stable_compact

__all__ = [
    "DecodeSettings",
    "TrackSettings",
    "FrameHeads",
    "FrameResult",
    "track_frame",
    "match",
    "message_senders",
    "warp_kernels_from_memory",
    "assign_track_ids",
    "next_references",
    "frame_to_host",
]


@dataclass(frozen=True)
class DecodeSettings:
    """``INFERENCE.*``: detection threshold, top-k peaks, NMS IoU (<= 0: none), detection slots and the
    fixed-point iterations run every frame (an unconverged frame is recomputed with :data:`.sync_free.EXACT`)."""

    score_thresh: float = 0.05
    topk_candidates: int = 300
    nms_thresh: float = 0.6
    max_detections: int = 100
    fixed_point_iters: int = 6

    @classmethod
    def from_config(cls, cfg: CfgNode) -> DecodeSettings:
        i = cfg.MODEL.VIS_STG.INFERENCE
        return cls(i.SCORE_THRESH, i.TOPK_CANDIDATES, i.NMS_THRESH, i.MAX_DETECTIONS, i.FIXED_POINT_ITERS)


@dataclass(frozen=True)
class TrackSettings:
    """``TRACK.*`` of the online step: class pruning of the pairs (§3.5), the score a new detection needs to
    become a reference instance, the memory length Δt (§3.6), and which references send messages in the graph.
    The baselines keep every detection and no memory (``ref_score_thresh`` -inf, ``memory_frames`` 0)."""

    prune_class_mismatch: bool = True
    ref_score_thresh: float = 0.0
    memory_frames: int = 7
    sender_nms: float = 0.0  # GRAPH.TEST_SENDER_NMS (> 0: :func:`message_senders` at this IoU)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> TrackSettings:
        t = cfg.MODEL.VIS_STG.TRACK
        return cls(t.PRUNE_CLASS_MISMATCH, t.REF_SCORE_THRESH, t.MEMORY_FRAMES, cfg.MODEL.VIS_STG.GRAPH.TEST_SENDER_NMS)


@dataclass
class FrameHeads:
    """Head outputs of one frame: CenterNet (heat maps, sizes, offsets per level), θ maps per level, mask
    features F̂^d_t and the association cue's own maps of the frame (embeddings / displacements, or None)."""

    det: Tuple[List[torch.Tensor], List[torch.Tensor], List[torch.Tensor]]
    thetas: List[torch.Tensor]
    mask_feats: torch.Tensor
    cue_maps: Optional[List[torch.Tensor]]


@dataclass
class FrameResult:
    """One frame of :func:`track_frame`: the D detection slots, their (D,) track ids and (D, h, w) mask
    probabilities, the D + N candidates of the next reference set (kept ones first), ``counts`` (5,) int64
    [kept references, kept detections, converged, peaks over top-k, detections over the slots] and the next
    free track id (device tensors)."""

    dets: Detections
    track_ids: torch.Tensor
    mask_probs: torch.Tensor
    refs: ReferenceSet
    counts: torch.Tensor
    next_track_id: torch.Tensor


#: (mask features, kernels (P, 169), level (P,), cells (P, 2), batch index (P,), kernel level (P,) or None)
#: -> mask logits (P, h, w): eq. (4)/(5) at the kernels' cells (``VisSTG.predict_masks``)
DecodeMasks = Callable[..., torch.Tensor]


def track_frame(
    heads: FrameHeads,
    features: Sequence[torch.Tensor],
    refs: Optional[ReferenceSet],
    edges: Optional[List[GraphEdges]],
    association: Optional[Association],
    decode_masks: DecodeMasks,
    warp_at_cells: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]],
    next_track_id: Union[int, torch.Tensor],
    t: int,
    strides: Sequence[int],
    level_strides: torch.Tensor,
    decode: DecodeSettings,
    track: TrackSettings,
    iters: int,
) -> FrameResult:
    """Steps 1-4 of the online step for frame t, all fixed-size. ``features``: F_t per level (for the shapes of
    the new reference nodes, ROIAligned when the next frame reads them); ``refs`` / ``edges``: the reference
    instances and the graph's edges (None if there are none); ``association``: the cue (None: no linking);
    ``warp_at_cells``: (level, cells) -> θ_{t-1} warped to those cells (None: eq. (4) masks only); ``iters``:
    fixed-point iterations of NMS and matching (:data:`.sync_free.EXACT` = enough for any input)."""
    dets, converged = CenterNetHead.inference(
        *heads.det, strides, decode.score_thresh, decode.topk_candidates, decode.nms_thresh, decode.max_detections,
        iters,
    )  # fmt: skip
    zeros = dets.level.new_zeros(len(dets))
    kernels = gather_at_cells_static(heads.thetas, dets.level, dets.cells)
    mask_probs = decode_masks(heads.mask_feats, kernels, dets.level, dets.cells, zeros).sigmoid()
    cues = association.detection_cues(heads.cue_maps, dets) if association is not None else None
    det_to_ref = zeros - 1
    if refs is not None and association is not None:  # §3.5
        scores, valid = association.pair_scores(FrameInputs(refs, dets, edges, heads.cue_maps, cues, level_strides))
        valid = valid & dets.valid[None, :]
        det_to_ref, conv = match(scores, valid, refs.classes, dets.classes, track.prune_class_mismatch, iters)
        converged = converged & conv
    if warp_at_cells is not None:  # §3.4: masks of the warped reference kernels, fused with eq. (4)'s
        warped, kernel_level = warp_kernels_from_memory(
            warp_at_cells(dets.level, dets.cells), dets.level, refs, det_to_ref, t
        )
        warped_probs = decode_masks(heads.mask_feats, warped, dets.level, dets.cells, zeros, kernel_level)
        mask_probs = (mask_probs + warped_probs.sigmoid()) / 2
    track_ids, next_track_id = assign_track_ids(next_track_id, refs, det_to_ref, dets.valid)
    placeholder = [f.new_zeros(len(dets), f.shape[1]) for f in features]  # node features: ROIAligned at t + 1
    time = torch.full_like(track_ids, t)
    current = ReferenceSet(
        track_ids, dets.classes, dets.scores, dets.boxes, placeholder, kernels, dets.level, time, cues
    )
    nxt, num_refs, num_pending = next_references(
        current, refs, det_to_ref, t, dets.valid, track.ref_score_thresh, track.memory_frames
    )
    counts = torch.cat([torch.stack([num_refs, num_pending, converged.long()]), dets.dropped])
    return FrameResult(dets, track_ids, mask_probs, nxt, counts, next_track_id)


def match(
    scores: torch.Tensor,
    valid: torch.Tensor,
    ref_classes: torch.Tensor,
    det_classes: torch.Tensor,
    prune_class_mismatch: bool = True,
    iters: int = EXACT,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """§3.5: prune class-mismatched pairs (``prune_class_mismatch``) and match one-to-one greedily by descending
    score, so each reference instance keeps its best edge and a detection extends at most one track.
    ``scores`` / ``valid`` (N, D): pair scores and candidate pairs. Returns (D,) reference index or -1 and the
    matcher's ``converged`` flag (``iters`` rounds; :data:`.sync_free.EXACT` = enough for any input)."""
    if prune_class_mismatch:
        valid = valid & (ref_classes[:, None] == det_classes[None, :])
    return greedy_match_fixed_point(scores, valid, iters)


def message_senders(boxes: torch.Tensor, scores: torch.Tensor, iou_thresh: float) -> torch.Tensor:
    """Which reference instances send messages at test time (``GRAPH.TEST_SENDER_NMS``): greedy class-agnostic
    NMS by descending score over the reference boxes (N, 4) with ``scores`` (N,), so one node per object updates
    F_t as in training, where the reference nodes are the GT objects (one each). Returns (N,) bool, fixed size
    (:func:`.sync_free.greedy_nms_fixed_point`, exact)."""
    order = scores.argsort(descending=True, stable=True)
    zeros = torch.zeros_like(order)
    keep, _ = greedy_nms_fixed_point(boxes[order], zeros, torch.ones_like(order, dtype=torch.bool), iou_thresh, EXACT)
    return torch.empty_like(keep).scatter_(0, order, keep)


def warp_kernels_from_memory(
    warped: torch.Tensor, det_level: torch.Tensor, refs: Optional[ReferenceSet], det_to_ref: torch.Tensor, t: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """§3.4 / §3.6: the kernel whose mask is fused with eq. (4)'s, and the level whose coordinate normaliser
    decodes it. ``warped`` (D, P): θ_{t-1} warped to the detections. A detection matched to an instance of the
    occlusion memory (last seen before t-1) uses that instance's stored kernel instead, decoded at the level it
    was produced at (the object may have changed level while occluded). Returns (D, P) kernels, (D,) levels."""
    if refs is None:
        return warped, det_level
    ref = det_to_ref.clamp(min=0)
    from_memory = (det_to_ref >= 0) & (refs.last_seen[ref] < t - 1)
    kernels = torch.where(from_memory[:, None], refs.kernels[ref].to(warped.dtype), warped)
    return kernels, torch.where(from_memory, refs.kernel_levels[ref], det_level)


def assign_track_ids(
    next_track_id: Union[int, torch.Tensor],
    refs: Optional[ReferenceSet],
    det_to_ref: torch.Tensor,
    det_valid: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Matched detections inherit their reference's track id; the other valid ones start new tracks numbered
    from ``next_track_id`` in slot order (padded slots get -1). Returns the (D,) ids and the next free id
    (a 0-dim device tensor: no host sync)."""
    valid = torch.ones_like(det_to_ref, dtype=torch.bool) if det_valid is None else det_valid
    matched = (det_to_ref >= 0) & valid
    new = valid & ~matched
    fresh = next_track_id + new.long().cumsum(0) - 1
    track_ids = torch.where(new, fresh, -1)
    if refs is not None and len(refs) > 0:
        track_ids = torch.where(matched, refs.track_ids[det_to_ref.clamp(min=0)], track_ids)
    return track_ids, next_track_id + new.long().sum()


def next_references(
    current: ReferenceSet,
    refs: Optional[ReferenceSet],
    det_to_ref: torch.Tensor,
    frame_idx: int,
    det_valid: Optional[torch.Tensor] = None,
    ref_score_thresh: float = 0.0,
    memory_frames: int = 7,
) -> Tuple[ReferenceSet, torch.Tensor, torch.Tensor]:
    """§3.6: the reference set of frame ``frame_idx + 1``: this frame's detections (``current``, D slots) that
    continue a track or score at least ``ref_score_thresh``, then the unmatched earlier instances still inside
    the memory window (frame_idx + 1 - last_seen <= Δt = ``memory_frames``), each group in its order.
    Fixed size: returns all D + N candidates with the kept ones first, the number kept and the number of kept
    detections (0-dim device tensors)."""
    keep_cur = (current.scores >= ref_score_thresh) | (det_to_ref >= 0)
    if det_valid is not None:
        keep_cur = keep_cur & det_valid
    keep, candidates = keep_cur, current
    if refs is not None and len(refs) > 0:
        alive = ~_any_match(det_to_ref, len(refs)) & (frame_idx + 1 - refs.last_seen <= memory_frames)
        keep, candidates = torch.cat([keep_cur, alive]), ReferenceSet.cat(current, refs)
    order, count = stable_compact(keep)
    return candidates[order], count, keep_cur.sum()


def _any_match(det_to_ref: torch.Tensor, num_refs: int) -> torch.Tensor:
    """(num_refs,) bool: the reference is matched by some detection."""
    hit = torch.zeros(num_refs + 1, dtype=torch.bool, device=det_to_ref.device)
    return hit.index_fill(0, torch.where(det_to_ref >= 0, det_to_ref, num_refs), True)[:num_refs]


def frame_to_host(
    dets: Detections,
    track_ids: torch.Tensor,
    mask_probs: torch.Tensor,
    counts: torch.Tensor,
    image_size: Tuple[int, int],
    output_size: Tuple[int, int],
    mask_out_stride: int,
    mask_threshold: float,
) -> Tuple[Instances, List[int]]:
    """Masks (D, H_pad / stride, W_pad / stride) and boxes from the padded input frame (valid part ``image_size``)
    to the original ``output_size``, then the frame's outputs and ``counts`` (int64, device) in one
    device-to-host copy (:func:`projects.modeling.online.to_host`). Returns ``Instances`` on the CPU (the valid
    slots) and ``[valid count, *counts]``."""
    h, w = image_size
    out_h, out_w = output_size
    probs = F.interpolate(mask_probs[:, None], scale_factor=mask_out_stride, mode="bilinear", align_corners=False)
    masks = F.interpolate(probs[:, :, :h, :w], size=output_size, mode="bilinear", align_corners=False)[:, 0]
    masks = masks > mask_threshold
    b = dets.boxes
    x0, x1 = (b[:, 0] * (out_w / w)).clamp(0, out_w), (b[:, 2] * (out_w / w)).clamp(0, out_w)
    y0, y1 = (b[:, 1] * (out_h / h)).clamp(0, out_h), (b[:, 3] * (out_h / h)).clamp(0, out_h)
    ids, classes, scores, boxes, host_counts, masks = to_host(  # the frame's one copy
        [
            track_ids.long(), dets.classes.long(), dets.scores.float(), torch.stack([x0, y0, x1, y1], dim=1).float(),
            torch.cat([dets.valid.sum()[None], counts]).long(), masks,
        ]
    )  # fmt: skip
    host_counts = host_counts.tolist()
    num = host_counts[0]
    result = Instances(output_size)
    result.track_ids, result.pred_classes, result.scores = ids[:num], classes[:num], scores[:num]
    result.pred_boxes = Boxes(boxes[:num])  # clipped to the frame on the device
    result.pred_masks = masks[:num]
    return result, host_counts
