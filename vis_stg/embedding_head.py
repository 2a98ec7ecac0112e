"""MaskTrack R-CNN-style embedding association, the "Embedding" baseline of Table 2 (§4.3).

An extra head predicts an embedding per location of the (fused) feature maps; an instance's embedding is read
at its centre cell. Association of a target instance j with the N reference instances of its frame is an
(N + 1)-way classification (index 0 = new instance) over logits [0, e_j·e_1, …, e_j·e_N], trained with
cross-entropy as in MaskTrack R-CNN. At test time a pair (i, j) is a candidate when p(i | j) exceeds
p(new | j); candidates are matched greedily like the edge association (the appearance term only: MaskTrack's
box-IoU / score bonuses are not used, so that the ablation isolates the association cue).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .detection_head import conv_branch

__all__ = ["EmbeddingHead"]


class EmbeddingHead(nn.Module):
    """Per level (B, D, H, W) -> (B, E, H, W) embeddings (weights shared over levels)."""

    def __init__(self, in_channels: int, embed_dim: int = 128, num_convs: int = 1, conv_dim: int = 256):
        super().__init__()
        self.layers = conv_branch(in_channels, conv_dim, num_convs, embed_dim)
        nn.init.normal_(self.layers[-1].weight, std=0.1)

    def forward(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        return [self.layers(f) for f in features]

    @staticmethod
    def losses(
        emb_t: torch.Tensor,
        batch_t: torch.Tensor,
        ids_t: torch.Tensor,
        emb_k: torch.Tensor,
        batch_k: torch.Tensor,
        ids_k: torch.Tensor,
    ) -> torch.Tensor:
        """Mean (N + 1)-way cross-entropy over the G_t target instances. ``emb_*`` (G, E) at the centre cells,
        ``batch_*`` (G,) image index, ``ids_*`` (G,) track ids."""
        if emb_t.shape[0] == 0:
            return emb_t.sum() * 0.0 + emb_k.sum() * 0.0
        logits = emb_t @ emb_k.t()  # (G_t, G_k)
        same_image = batch_t[:, None] == batch_k[None, :]
        logits = logits.masked_fill(~same_image, float("-inf"))
        logits = torch.cat([logits.new_zeros(len(emb_t), 1), logits], dim=1)
        match = same_image & (ids_t[:, None] == ids_k[None, :]) & (ids_t[:, None] >= 0)
        if match.shape[1] == 0:  # no reference instance: every target instance is "new"
            labels = torch.zeros_like(ids_t)
        else:
            labels = torch.where(match.any(1), match.float().argmax(1) + 1, torch.zeros_like(ids_t))
        return F.cross_entropy(logits, labels)

    @staticmethod
    def match_scores(emb_ref: torch.Tensor, emb_det: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N, E), (D, E) -> p(i | j) (N, D) and the candidate mask p(i | j) > p(new | j)."""
        logits = torch.cat([emb_det.new_zeros(1, emb_det.shape[0]), emb_ref @ emb_det.t()], dim=0)
        prob = logits.softmax(dim=0)
        return prob[1:], prob[1:] > prob[:1]
