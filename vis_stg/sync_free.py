"""Fixed-size, host-sync-free building blocks of the online step (:meth:`vis_stg.meta_arch.VisSTG.step`).

Every tensor here has a shape fixed by the config and the input size, never by the data: detections live in
``INFERENCE.MAX_DETECTIONS`` slots with a ``valid`` mask, and the sequential greedy rules (class-aware NMS,
one-to-one matching by descending score) are computed in a fixed number of parallel rounds.

NMS: greedy selection over items ordered by priority (rank 0 first) keeps item p iff no kept item of better rank
conflicts with it. ``x_{k+1} = f(x_k)`` with ``f(x)_p = valid_p ∧ ¬∃ q ≺ p: conflict(q, p) ∧ x_q`` has exactly
one fixed point (``f(x)_p`` only reads better-ranked items, so induction over the ranks fixes every entry),
and that fixed point is the greedy result; after k iterations every item whose conflict chain is shorter than
k is already final. Matching: rounds of locally dominant pairs (:func:`greedy_match_fixed_point`). The
iterations run a fixed number of times (``INFERENCE.FIXED_POINT_ITERS``) and return
a ``converged`` flag (``f(x) == x``) on the device, which the step reads with its single batched copy of the
frame's outputs; an unconverged frame (a conflict chain longer than the iterations) is recomputed with
:data:`EXACT` iterations (more device work on that frame, still no extra host sync).

Shapes: D detection slots (padded, ``valid`` mask), N reference instances, K candidates before NMS, C channels,
L FPN levels.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torchvision.ops import box_iou

#: ``iters`` value that runs each fixed-point computation to a bound that guarantees the exact result (NMS:
#: K + 1 iterations for K boxes; matching: min(N_ref, N_det) rounds) without reading anything back.
EXACT = -1

__all__ = ["EXACT", "gather_at_cells_static", "greedy_nms_fixed_point", "greedy_match_fixed_point", "stable_compact"]


def gather_at_cells_static(maps: Sequence[torch.Tensor], level: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Read per-level maps (1, C, H_l, W_l) of one image at D cells (``level`` (D,), ``cells`` (D, 2) integer
    (x, y)): (D, C). Every level is read at every (clamped) cell and the detection's own level is selected, so
    no index set depends on the data (C·D·levels reads: cheap next to the maps)."""
    out = None
    for lvl, m in enumerate(maps):
        h, w = m.shape[-2:]
        x, y = cells[:, 0].clamp(0, w - 1), cells[:, 1].clamp(0, h - 1)
        read = m[0][:, y, x].t()  # (D, C)
        out = read if out is None else torch.where((level == lvl)[:, None], read, out)
    return out


def _fixed_point(valid: torch.Tensor, step, iters: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Iterate ``x <- valid & step(x)`` from ``x = valid`` ``iters`` times (:data:`EXACT`: len(valid) + 1,
    enough for any input). Returns (x, converged) with ``converged`` a 0-dim bool tensor."""
    x = valid
    if iters == EXACT:
        iters = valid.numel() + 1
    for _ in range(iters):
        x = valid & step(x)
    return x, (valid & step(x) == x).all()


def greedy_nms_fixed_point(
    boxes: torch.Tensor, classes: torch.Tensor, valid: torch.Tensor, iou_thresh: float, iters: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Class-aware greedy NMS (``torchvision.ops.batched_nms`` semantics: a box is dropped when its IoU with a
    kept, higher-scoring box of its class exceeds ``iou_thresh``) of K boxes **already sorted by descending
    score**. ``boxes`` (K, 4), ``classes`` (K,), ``valid`` (K,). Returns keep (K,) bool and ``converged``."""
    k = boxes.shape[0]
    earlier = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu(1)  # [i, j]: i ranks before j
    suppresses = earlier & (classes[:, None] == classes[None, :]) & (box_iou(boxes, boxes) > iou_thresh)
    return _fixed_point(valid, lambda x: ~(suppresses & x[:, None]).any(0), iters)


def greedy_match_fixed_point(
    scores: torch.Tensor, valid: torch.Tensor, iters: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One-to-one matching of (N_ref, N_det) ``scores`` over ``valid`` pairs, greedily by descending score
    (ties: row-major order). Returns (N_det,) matched reference index or -1, and ``converged``.

    Computed in rounds of locally dominant pairs (Preis): a still-available pair that ranks first in its row
    and in its column among the available pairs is one the greedy order takes, so every round adds all of
    them at once (at least the best remaining pair) and removes their rows and columns. ``iters`` rounds
    (:data:`EXACT`: min(N_ref, N_det), enough for any input); converged = no available pair remains."""
    n_ref, n_det = scores.shape
    if n_ref == 0 or n_det == 0:
        return scores.new_full((n_det,), -1, dtype=torch.long), torch.ones((), dtype=torch.bool, device=scores.device)
    flat = torch.where(valid, scores, float("-inf")).flatten()
    order = flat.argsort(descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    rank = rank.view(n_ref, n_det)
    worst = torch.full_like(rank, order.numel())
    selected = torch.zeros_like(valid)
    available = valid
    for _ in range(min(n_ref, n_det) if iters == EXACT else iters):
        held = torch.where(available, rank, worst)
        dominant = available & (held.amin(1, keepdim=True) == rank) & (held.amin(0, keepdim=True) == rank)
        selected = selected | dominant
        available = available & ~dominant.any(1, keepdim=True) & ~dominant.any(0, keepdim=True)
    ref_idx = torch.arange(n_ref, device=scores.device)[:, None].expand(n_ref, n_det)
    det_to_ref = torch.where(selected, ref_idx, -1).amax(0)
    return det_to_ref, ~available.any()


def stable_compact(keep: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Indices (N,) putting the kept entries first, each group in its original order, and the number kept
    (0-dim tensor, on the device)."""
    return (~keep).to(torch.uint8).argsort(stable=True), keep.sum()
