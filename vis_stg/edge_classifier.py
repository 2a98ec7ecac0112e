"""The paper's association (§3.5, eq. (6)): a binary classifier on the final edge features h^e(L).

Training: mean BCE over the pruned training edge set E_prune with labels by identity (:mod:`.edge_targets`).
Test: an edge is a candidate when it reaches a detected target node (background pruning) and its probability is
at least ``TRACK.MATCH_THRESH``; class pruning and the greedy one-to-one matching (each reference instance keeps
its best edge) are :func:`.online_step.match`. The edge of a (reference, detection) pair is found from the fixed
window layout of :meth:`.graph.SpatialTemporalGraph.forward_online` (computed, not searched).

Shapes: E edges, D feature dim, N reference instances, M detection slots.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from .association import ASSOCIATION_REGISTRY, Association, FrameInputs, PairInputs
from .edge_targets import edge_set_and_labels
from .graph import GraphEdges
from .targets import CenterTargets

__all__ = ["EdgeClassifier"]


@ASSOCIATION_REGISTRY.register()
class EdgeClassifier(Association):
    """h^e(L) (E, D) -> association logit (E,) (eq. (6)); the ``edge`` association cue."""

    cue, module_name, reads_edges = "edge", "edge_classifier", True

    @configurable
    def __init__(
        self,
        dim: int,
        hidden_dim: int = 128,
        *,
        match_thresh: float = 0.5,
        num_classes: int = 1,
        train_edge_set: str = "predicted",
        train_score_thresh: float = 0.05,
        train_match_radius: int = 1,
        prune_class_mismatch: bool = True,
    ):
        """``match_thresh``: edge probability for a candidate; ``train_*``: the training edge set of eq. (6)
        (:func:`.edge_targets.edge_set_and_labels`)."""
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, 1))
        self.match_thresh, self.num_classes = match_thresh, num_classes
        self.train_edge_set, self.train_score_thresh = train_edge_set, train_score_thresh
        self.train_match_radius, self.prune_class_mismatch = train_match_radius, prune_class_mismatch

    @classmethod
    def from_config(cls, cfg, dim: int):
        t = cfg.MODEL.VIS_STG.TRACK
        return {
            "dim": dim,
            "hidden_dim": t.CLASSIFIER_HIDDEN_DIM,
            "match_thresh": t.MATCH_THRESH,
            "num_classes": int(cfg.MODEL.NUM_CLASSES),
            "train_edge_set": t.TRAIN_EDGE_SET,
            "train_score_thresh": t.TRAIN_SCORE_THRESH,
            "train_match_radius": t.TRAIN_MATCH_RADIUS,
            "prune_class_mismatch": t.PRUNE_CLASS_MISMATCH,
        }

    def forward(self, edge_features: torch.Tensor) -> torch.Tensor:
        return self.mlp(edge_features).squeeze(-1)

    def training_losses(self, pair: PairInputs) -> Dict[str, torch.Tensor]:
        k = pair.targets_k
        loss = self.losses(
            pair.edges,
            k.ids,
            k.classes,
            k.batch_idx,
            pair.targets_t,
            pair.shapes,
            pair.strides,
            pair.heatmaps_t,
            self.num_classes,
            self.train_edge_set,
            self.train_score_thresh,
            self.train_match_radius,
            self.prune_class_mismatch,
        )
        return {"loss_edge": loss}

    def losses(
        self,
        edges: Sequence[GraphEdges],
        ref_ids: torch.Tensor,
        ref_classes: torch.Tensor,
        ref_batch: torch.Tensor,
        targets: CenterTargets,
        shapes: Sequence[Tuple[int, int]],
        strides: Sequence[float],
        heatmaps: Optional[Sequence[torch.Tensor]],
        num_classes: int,
        edge_set: str = "predicted",
        score_thresh: float = 0.05,
        match_radius: int = 1,
        prune_class_mismatch: bool = True,
    ) -> torch.Tensor:
        """Eq. (6): mean BCE over the training edge set E_prune and its labels (:mod:`.edge_targets`).
        ``shapes`` / ``strides``: per level (H, W) and input pixels per cell; ``heatmaps``: per level
        (B, K, H, W) heat-map logits predicted on F̂_t."""
        logits, labels = [], []
        for lvl, (e, shape, stride) in enumerate(zip(edges, shapes, strides)):
            keep, y = edge_set_and_labels(
                e,
                lvl,
                shape,
                stride,
                ref_ids,
                ref_classes,
                ref_batch,
                targets,
                None if heatmaps is None else heatmaps[lvl],
                num_classes,
                edge_set,
                score_thresh,
                match_radius,
                prune_class_mismatch,
            )
            logits.append(self(e.features[keep]))
            labels.append(y[keep])
        logits, labels = torch.cat(logits), torch.cat(labels)
        if logits.numel() == 0:  # keep every parameter in the graph (DDP)
            return sum(p.sum() for p in self.parameters()) * 0.0
        return F.binary_cross_entropy_with_logits(logits, labels)

    def pair_scores(self, frame: FrameInputs) -> Tuple[torch.Tensor, torch.Tensor]:
        """Edge-classifier probabilities (N_ref, M) for the edges that reach detected nodes (background
        pruning); candidates are existing edges with probability >= ``match_thresh``. An edge exists when the
        detection's cell lies in the reference instance's window on the detection's level (edge r·w² + i·w + j
        joins instance r to the cell (cx_r + j - w//2, cy_r + i - w//2))."""
        dets, num_ref = frame.dets, len(frame.refs)
        scores = dets.scores.new_zeros(num_ref, len(dets))
        exists = torch.zeros_like(scores, dtype=torch.bool)
        rows = torch.arange(num_ref, device=scores.device)[:, None]
        for lvl, e in enumerate(frame.edges):
            w, half = e.window, e.window // 2
            dx = dets.cells[None, :, 0] - e.ref_cells[:, None, 0] + half  # (N_ref, M)
            dy = dets.cells[None, :, 1] - e.ref_cells[:, None, 1] + half
            inside = (dx >= 0) & (dx < w) & (dy >= 0) & (dy < w) & (dets.level == lvl)[None, :]
            idx = rows * (w * w) + dy.clamp(0, w - 1) * w + dx.clamp(0, w - 1)
            prob = self(e.features[idx.flatten()]).sigmoid().view_as(scores)
            hit = inside & e.valid[idx]
            scores = torch.where(hit, prob.to(scores.dtype), scores)
            exists = exists | hit
        return scores, exists & (scores >= self.match_thresh)
