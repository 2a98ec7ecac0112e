"""Association decisions: from the GNN's logits (§3.1) or from the MaskTrack R-CNN rule (Yang et al. 2019,
the "Association from [31]" ablation of Table 1)."""
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
    track_mean: torch.Tensor,
    track_classes: torch.Tensor,
    track_alive: torch.Tensor,
    iou: torch.Tensor,
    temperature: float,
    score_weight: float,
    iou_weight: float,
    class_weight: float,
    score_thresh: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """MaskTrack R-CNN's rule: for detection j and candidate n in {new, tracks},

        v_j(n) = log p_j(n) + score_weight * log s_j + iou_weight * IoU(j, n) + class_weight * [c_j == c_n]

    where p_j is a softmax over [0, temperature * cos(app_j, mean_n)] (the "new" candidate has similarity 0 and
    no IoU/class terms) and s_j the detection confidence. Detections with s_j >= ``score_thresh`` are taken in
    decreasing confidence; each picks its best candidate among the tracks not yet taken (or "new").

    det_*: (B, M[, A]); track_mean (B, N, A); track_classes, track_alive (B, N); iou (B, N, M).
    Returns assigned (B, N) detection index or -1, new (B, M) bool.
    """
    b_size, n_tracks = track_alive.shape
    assigned = torch.full((b_size, n_tracks), -1, dtype=torch.long, device=track_alive.device)
    new = torch.zeros_like(det_valid)
    cosine = torch.einsum("bma,bna->bnm", F.normalize(det_appearance, dim=-1), F.normalize(track_mean, dim=-1))
    sim = temperature * cosine
    for b in range(b_size):
        alive = track_alive[b]
        logits = torch.cat([sim.new_zeros(1, sim.shape[-1]), sim[b].masked_fill(~alive[:, None], float("-inf"))])
        v = logits.log_softmax(dim=0)  # (1 + N, M)
        v[1:] += iou_weight * iou[b] + class_weight * (track_classes[b][:, None] == det_classes[b][None, :]).float()
        v += score_weight * det_scores[b].clamp(min=1e-6).log()[None, :]
        taken = torch.zeros(n_tracks, dtype=torch.bool, device=v.device)
        order = det_scores[b].argsort(descending=True)
        for j in order.tolist():
            if not det_valid[b, j] or det_scores[b, j] < score_thresh:
                continue
            cand = v[:, j].clone()
            cand[1:][taken | ~alive] = float("-inf")
            best = int(cand.argmax())
            if best == 0:
                new[b, j] = True
            else:
                taken[best - 1] = True
                assigned[b, best - 1] = j
    return assigned, new
