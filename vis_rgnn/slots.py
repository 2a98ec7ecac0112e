"""Track-slot allocation of RGNN-VIS on the device: which of the ``MAX_TRACKS`` slots each new track takes (§3.1
track initialisation, App. A.3 fixed-size padded track memory), as the authors' release does it
(``rgnnvis/models/rgnn.py``): the lowest free slots in detection order; a started track keeps its slot for the whole
video, active or not, so no slot is evicted nor re-used. Sorts on fixed-size tensors, no host syncs.

Shapes: B videos, N track slots, M detection slots (padded).
"""

from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["allocate_slots"]


def allocate_slots(alive: torch.Tensor, new: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Slots for the new tracks (B, M) ``new``, in detection order (detections come sorted by decreasing score):
    the free (not ``alive`` (B, N)) slots in index order; a new track that finds no free slot is dropped.

    Returns slot_det (B, N): the detection starting a track in each slot or -1, and slot_rank (B, N): its
    rank among the video's new tracks of this frame (0 = first detection) or -1."""
    b_size, n_slots = alive.shape
    m = new.shape[1]
    index = torch.arange(m, device=new.device)
    cand_order = torch.where(new, index, m).argsort(dim=1, stable=True)  # (B, M) new tracks first, in order
    free = ~alive
    slot_order = alive.to(torch.uint8).argsort(dim=1, stable=True)  # (B, N) free slots first, by index
    k = min(n_slots, m)
    rank = torch.arange(k, device=alive.device)
    limit = torch.minimum(new.sum(dim=1), free.sum(dim=1))  # (B,) tracks started
    taken = rank[None] < limit[:, None]  # (B, k)
    slot_det = torch.full((b_size, n_slots), -1, dtype=torch.long, device=alive.device)
    slot_rank = torch.full_like(slot_det, -1)
    slot_det.scatter_(1, slot_order[:, :k], torch.where(taken, cand_order[:, :k], -1))
    slot_rank.scatter_(1, slot_order[:, :k], torch.where(taken, rank[None], -1))
    return slot_det, slot_rank
