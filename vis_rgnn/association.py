"""Association decisions: from the GNN's logits (§3.1) or from the MaskTrack R-CNN rule (Yang et al. 2019,
the "Association from [31]" ablation of Table 1).

Shapes: B videos, N track slots, M detection slots (padded, ``det_valid`` mask), A appearance dim.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = ["gnn_association", "heuristic_association"]


def gnn_association(
    match_logits: torch.Tensor,
    new_logits: torch.Tensor,
    edge_mask: torch.Tensor,
    det_valid: torch.Tensor,
    inactive_threshold: float,
    init_threshold: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each track takes its best-matching detection if that logit reaches ``inactive_threshold`` (otherwise
    the track is inactive this frame); a detection starts a track if its new-track logit reaches
    ``init_threshold`` (§3.1, §3.6).

    match_logits (B, N, M), new_logits (B, M), edge_mask (B, N, M), det_valid (B, M).
    Returns assigned (B, N) detection index or -1, new (B, M) bool.
    """
    masked = match_logits.detach().masked_fill(~edge_mask, float("-inf"))
    if masked.shape[-1] == 0:
        assigned = torch.full(masked.shape[:2], -1, dtype=torch.long, device=masked.device)
    else:
        best, arg = masked.max(dim=-1)
        assigned = torch.where(best >= inactive_threshold, arg, torch.full_like(arg, -1))
    new = det_valid & (new_logits.detach() >= init_threshold)
    return assigned, new


@torch.no_grad()
def heuristic_association(
    det_scores: torch.Tensor,
    det_classes: torch.Tensor,
    det_appearance: torch.Tensor,
    det_valid: torch.Tensor,
    track_app: torch.Tensor,
    track_classes: torch.Tensor,
    track_alive: torch.Tensor,
    iou: torch.Tensor,
    temperature: float,
    score_weight: float,
    iou_weight: float,
    class_weight: float,
    score_thresh: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """MaskTrack R-CNN's rule (Yang et al. 2019, eq. 4 and its reference implementation). For detection j and
    candidate n in {new (n = 0), tracks 1..N}:

        v_j(n) = log p_j(n) + score_weight * log s_j + iou_weight * IoU(j, n) + class_weight * [c_j == c_n]

    p_j is a softmax over [0, temperature * cos(app_j, app_n)] -- the "new" dummy has similarity 0 -- and, as in
    the reference implementation, the dummy counts as IoU 0 and as the *same* class (its class term is always
    ``class_weight``). Every detection with s_j >= ``score_thresh`` takes its best candidate: "new" starts a
    track; when several detections pick the same track, the one with the highest v_j(n) gets it and the others
    are dropped (neither matched nor new).

    det_*: (B, M[, A]); track_app (B, N, A) each track's appearance; track_classes, track_alive (B, N);
    iou (B, N, M). Returns assigned (B, N) detection index or -1, new (B, M) bool. No host syncs.
    """
    b_size, n_tracks = track_alive.shape
    assigned = torch.full((b_size, n_tracks), -1, dtype=torch.long, device=track_alive.device)
    cosine = torch.einsum("bma,bna->bnm", F.normalize(det_appearance, dim=-1), F.normalize(track_app, dim=-1))
    sim = (temperature * cosine).masked_fill(~track_alive[:, :, None], float("-inf"))
    logp = torch.cat([sim.new_zeros(b_size, 1, sim.shape[-1]), sim], dim=1).log_softmax(dim=1)  # (B, 1+N, M)
    same = (track_classes[:, :, None] == det_classes[:, None, :]).to(logp.dtype)
    v = logp + torch.cat(
        [logp.new_full((b_size, 1, logp.shape[-1]), class_weight), iou_weight * iou + class_weight * same], dim=1
    )
    v = v + score_weight * det_scores.clamp(min=1e-6).log()[:, None, :]
    v[:, 1:] = v[:, 1:].masked_fill(~track_alive[:, :, None], float("-inf"))
    use = det_valid & (det_scores >= score_thresh)
    best_v, best = v.max(dim=1)  # (B, M)
    # Conflicts on the device: track n goes to the first detection with the highest v_j(n) among those whose
    # best candidate it is (the reference implementation's loop over detections, strict '>').
    slots = torch.arange(1, n_tracks + 1, device=best.device)
    claims = (best[:, None, :] == slots[None, :, None]) & use[:, None, :]  # (B, N, M)
    claim_v = torch.where(claims, best_v[:, None, :], float("-inf"))
    if claim_v.shape[-1] > 0:
        top_v, top_j = claim_v.max(dim=-1)  # first maximal index on ties
        assigned = torch.where(top_v > float("-inf"), top_j, assigned)
    new = use & (best == 0)
    return assigned, new
