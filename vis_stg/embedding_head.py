"""MaskTrack R-CNN-style embedding association, the "Embedding" baseline of Table 2 (§4.3).

An extra head predicts an embedding per location of the (fused) feature maps; an instance's embedding is read
at its centre cell. Association of a target instance j with the N reference instances of its frame is an
(N + 1)-way classification (index 0 = new instance) over logits [0, e_j·e_1, …, e_j·e_N], trained with
cross-entropy as in MaskTrack R-CNN. At test time a pair (i, j) is a candidate when p(i | j) exceeds
p(new | j); candidates are matched greedily like the edge association (the appearance term only: MaskTrack's
box-IoU / score bonuses are not used, so that the ablation isolates the association cue). With
``TRACK.JOINT_EMBEDDING`` the head is trained next to the edge classifier on detached features (it does not shape
the shared features), so the association ablation is an eval-time switch on one network.

Shapes: G GT objects, N reference instances, D detection slots, E embedding dim.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from .association import ASSOCIATION_REGISTRY, Association, FrameInputs, PairInputs
from .detection_head import Detections, conv_branch
from .losses import graph_anchor
from .sync_free import gather_at_cells_static
from .targets import gather_at_cells

__all__ = ["EmbeddingHead"]


@ASSOCIATION_REGISTRY.register()
class EmbeddingHead(Association):
    """Per level (B, D, H, W) -> (B, E, H, W) embeddings (weights shared over levels); the ``embedding`` cue."""

    cue, module_name = "embedding", "embed_head"

    @configurable
    def __init__(
        self,
        in_channels: int,
        embed_dim: int = 128,
        num_convs: int = 1,
        conv_dim: int = 256,
        *,
        detach_features: bool = False,
    ):
        """``detach_features``: train on detached features (``TRACK.JOINT_EMBEDDING``)."""
        super().__init__()
        self.layers = conv_branch(in_channels, conv_dim, num_convs, embed_dim)
        nn.init.normal_(self.layers[-1].weight, std=0.1)
        self.detach_features = detach_features

    @classmethod
    def from_config(cls, cfg, dim: int):
        c = cfg.MODEL.VIS_STG
        return {
            "in_channels": dim,
            "embed_dim": c.TRACK.EMBED_DIM,
            "num_convs": c.TRACK.EMBED_NUM_CONVS,
            "conv_dim": c.DET.CONV_DIM,
            "detach_features": bool(c.TRACK.JOINT_EMBEDDING),
        }

    def forward(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        return [self.layers(f) for f in features]

    def training_losses(self, pair: PairInputs) -> Dict[str, torch.Tensor]:
        heads_in, feats_k, t, k = pair.heads_in, pair.feats_k, pair.targets_t, pair.targets_k
        if self.detach_features:
            heads_in, feats_k = [f.detach() for f in heads_in], [f.detach() for f in feats_k]
        emb_t, emb_k = self(heads_in), self(feats_k)
        loss = self.losses(
            gather_at_cells(emb_t, t.level, t.batch_idx, t.cells),
            t.batch_idx,
            t.ids,
            gather_at_cells(emb_k, k.level, k.batch_idx, k.cells),
            k.batch_idx,
            k.ids,
        )
        if len(t) == 0:  # no target instance: keep the embedding head in the graph (DDP)
            loss = loss + graph_anchor(*emb_t, *emb_k)
        return {"loss_embed": loss}

    def frame_maps(
        self, heads_in: Sequence[torch.Tensor], prev_features: Optional[Sequence[torch.Tensor]]
    ) -> List[torch.Tensor]:
        return self(heads_in)

    def detection_cues(self, maps: Optional[List[torch.Tensor]], dets: Detections) -> Optional[torch.Tensor]:
        """(D, E) embeddings at the detections' cells."""
        return None if maps is None else gather_at_cells_static(maps, dets.level, dets.cells)

    def pair_scores(self, frame: FrameInputs) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.match_scores(frame.refs.embeddings, frame.cues)

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
