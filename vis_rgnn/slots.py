"""Track-slot allocation and eviction of RGNN-VIS on the device: which of the ``MAX_TRACKS`` slots each new
track takes (§3.1 track initialisation, App. A.3 fixed-size padded track memory), with sorts on fixed-size
tensors and no host syncs.

Shapes: B videos, N track slots, M detection slots (padded).
"""

from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["allocate_slots"]


def allocate_slots(
    alive: torch.Tensor,
    confidence: torch.Tensor,
    new: torch.Tensor,
    new_logits: torch.Tensor,
    active: torch.Tensor,
    evict: bool = True,
    order: str = "logit",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Slots for the new tracks (B, M) ``new``, best new-track logit first (``order`` "logit") or in detection
    order (``order`` "detection", the authors' release: detections come sorted by decreasing score): free slots
    in index order, then, when all N slots are taken and ``evict``, the inactive (not ``active``) tracks by
    increasing ``confidence`` (evicted); a new track that finds no slot is dropped. ``evict`` False is the
    release (``MODEL.RGNN.SLOT_EVICTION``): a started track keeps its slot for the whole video, inactive or not.
    alive, confidence, active: (B, N); new, new_logits: (B, M).

    Returns slot_det (B, N): the detection starting a track in each slot or -1, and slot_rank (B, N): its
    rank among the video's new tracks of this frame (0 = best logit) or -1."""
    b_size, n_slots = alive.shape
    m = new.shape[1]
    if order == "logit":
        key = torch.where(new, new_logits.detach(), float("-inf"))
    elif order == "detection":
        index = torch.arange(m, device=new.device, dtype=new_logits.dtype)
        key = torch.where(new, -index, float("-inf"))
    else:
        raise ValueError(f"MODEL.RGNN.NEW_TRACK_ORDER must be 'logit' or 'detection', got {order!r}")
    cand_order = key.argsort(dim=1, descending=True, stable=True)  # (B, M) candidates first
    free = ~alive
    evictable = alive & ~active if evict else torch.zeros_like(alive)
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
