"""Training identities of RGNN-VIS tracks (§3.5): a track's identity is the annotation of the detection that
started it, or -1 (a false positive, or a duplicate of an annotation another track already owns). The losses of
:mod:`vis_rgnn.losses` read their targets from these identities.

Shapes: B videos, N track slots, M detection slots (padded).
"""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["new_track_identity"]


def new_track_identity(
    identity: torch.Tensor,
    alive: torch.Tensor,
    starts: torch.Tensor,
    det: torch.Tensor,
    det_identity: Optional[torch.Tensor],
) -> torch.Tensor:
    """Training identity (B, N) of the slots in ``starts`` (B, N) = annotation of the initialising detection
    ``det`` (B, N), read from ``det_identity`` (B, M; None at inference: all -1). An annotation is owned by its
    first track: when another alive slot (``alive`` after this frame's starts) already carries it in
    ``identity`` (before this frame's starts), the new track is a duplicate (identity -1). Tracks started in
    the same frame from one annotation all take it."""
    if det_identity is None:
        return torch.full_like(identity, -1)
    ann = torch.where(starts, torch.gather(det_identity, 1, det), -1)
    n = identity.shape[1]
    others = alive[:, None, :] & ~torch.eye(n, dtype=torch.bool, device=alive.device)[None]  # (B, N, N)
    owned = (others & (identity[:, None, :] == ann[:, :, None])).any(dim=-1)
    return torch.where((ann >= 0) & owned, -1, ann)
