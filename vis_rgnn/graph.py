"""The graph neural network over tracks and detections (§3.1, eq. 1, App. A.2 Table 3, App. A.3).

Graph elements (one graph per video in the batch):

- track nodes t_i (the gated track embeddings of the previous frame), detection nodes d_j,
- track-detection edges e_ij, the empty track t_0 (its own recurrent embedding, vis_rgnn/tracker.py) and its
  edges n_j to every detection ("potential new track" embeddings). The empty track is treated like a track but
  every layer touching it has its own weights (§3.1).

A GNN block (Battaglia et al. 2018 with gated accumulation) computes

    e_ij <- f_e([e_ij, t_i, d_j])                    n_j <- f_n([n_j, t_0, d_j])                    (1a)
    t_i  <- f_t([t_i, sum_j g_t(e_ij) * e_ij])        t_0 <- f_0([t_0, sum_j g_0(n_j) * n_j])         (1b)
    d_j  <- f_d([d_j, sum_i g_d(e_ij) * e_ij + g'_d(n_j) * n_j])                                     (1c)

with f_* = Linear + ReLU and g_* = Linear(D, 32) + ReLU + Linear(32, D) + Sigmoid; a detection gates its new-track
edge with its own g'_d (the release's DetFanatic: ``bkgdet_sigmoid`` next to ``trkdet_sigmoid``). In the first
block the edges are created from raw inputs instead (Table 3: Linear(K+4+2+D, D) + ReLU + Residual(D, 32); for
n_j the input is K+4+1+D) and the detection update reads the raw detection input (K+4) in place of d_j, which
gives Table 3's Linear(173, 128) for K = 41. Each block is followed by residual blocks on every element type. As in
the release's GraphNet x 4, every block and residual block updates all five element types (the final detection
vertices start new tracks, the final empty-track vertex feeds its recurrent memory) and the residual blocks end
with a ReLU (``cm.Residual``, :class:`ResidualReLU`).

The graph is held in fixed-size padded tensors with masks (:class:`DenseLayout`, App. A.3): every track slot is
paired with every detection slot, and the masked sums keep padded elements from influencing active ones. The
same GNN on flat lists of the active elements, reduced with ``projects.graph.scatter_sum``, is the test oracle
(``tests/rgnn_references.py``).

Shapes: B videos, N track slots, M detection slots (padded), F / D feature dims, K+1 classes (background
last).
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from .appearance import ResidualMLP

__all__ = [
    "DenseLayout",
    "GatedAccumulation",
    "GNNBlock",
    "TrackDetectionGNN",
    "ResidualReLU",
]


class ResidualReLU(ResidualMLP):
    """The release's ``cm.Residual``: ReLU(x + Linear(hidden, dim)(ReLU(Linear(dim, hidden)(x)))) -- Table 3's
    residual block with a ReLU after the sum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x))


class DenseLayout:
    """Padded tensors: tracks (B, N, F), detections (B, M, F), edges (B, N, M, F), empty track (B, F).

    ``track_mask`` (B, N) and ``det_mask`` (B, M) mark active elements; sums use ``torch.where`` so that
    padded values (even non-finite ones) never reach an active element. Fixed sizes, no host syncs.
    """

    def __init__(self, track_mask: torch.Tensor, det_mask: torch.Tensor):
        self.track_mask, self.det_mask = track_mask, det_mask
        self.edge_mask = track_mask[:, :, None] & det_mask[:, None, :]
        self.num_tracks, self.num_dets = track_mask.shape[1], det_mask.shape[1]

    # Gathers onto edges / detections.
    def track_to_edge(self, t: torch.Tensor) -> torch.Tensor:
        return t[:, :, None].expand(-1, -1, self.num_dets, -1)

    def det_to_edge(self, d: torch.Tensor) -> torch.Tensor:
        return d[:, None].expand(-1, self.num_tracks, -1, -1)

    def empty_to_det(self, t0: torch.Tensor) -> torch.Tensor:
        return t0[:, None].expand(-1, self.num_dets, -1)

    # Masked sums.
    def sum_to_tracks(self, msg: torch.Tensor) -> torch.Tensor:
        return torch.where(self.edge_mask[..., None], msg, 0.0).sum(dim=2)

    def sum_to_dets(self, msg: torch.Tensor) -> torch.Tensor:
        return torch.where(self.edge_mask[..., None], msg, 0.0).sum(dim=1)

    def sum_to_empty(self, msg: torch.Tensor) -> torch.Tensor:
        return torch.where(self.det_mask[..., None], msg, 0.0).sum(dim=1)


def _gate(dim: int, hidden: int) -> nn.Module:
    """g of eq. (1): Linear(D, hidden) + ReLU + Linear(hidden, D) + Sigmoid."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim), nn.Sigmoid())


class GatedAccumulation(nn.Module):
    """Node update of eq. (1b)/(1c): node <- ReLU(W [node, sum_k g(e_k) * e_k]), g: D -> hidden -> D -> sigmoid.
    ``empty_gate``: a second gate for the new-track edge of a detection's update (the release's DetFanatic)."""

    def __init__(self, node_dim: int, dim: int, gate_hidden: int, empty_gate: bool = False):
        super().__init__()
        self.gate = _gate(dim, gate_hidden)
        self.update = nn.Linear(node_dim + dim, dim)
        if empty_gate:
            self.empty_gate = _gate(dim, gate_hidden)

    def message(self, edges: torch.Tensor) -> torch.Tensor:
        return self.gate(edges) * edges

    def empty_message(self, empty_edges: torch.Tensor) -> torch.Tensor:
        """Gated new-track edge n_j for its detection's update (its own gate)."""
        return self.empty_gate(empty_edges) * empty_edges

    def forward(self, node: torch.Tensor, accumulated: torch.Tensor) -> torch.Tensor:
        return F.relu(self.update(torch.cat([node, accumulated], dim=-1)))


class GNNBlock(nn.Module):
    """One block of eq. (1), updating all five element types. ``first``: edges / new-track edges are created from
    raw inputs (Table 3, block 1) with Linear + ReLU + ``ResidualReLU``."""

    def __init__(self, dim: int, gate_hidden: int, residual_hidden: int, first: bool, raw_dims: Dict[str, int]):
        super().__init__()
        self.first = first
        if first:
            self.edge = nn.Sequential(nn.Linear(raw_dims["edge"], dim), nn.ReLU(), ResidualReLU(dim, residual_hidden))
            self.empty_edge = nn.Sequential(
                nn.Linear(raw_dims["empty_edge"], dim), nn.ReLU(), ResidualReLU(dim, residual_hidden)
            )
        else:
            self.edge = nn.Sequential(nn.Linear(3 * dim, dim), nn.ReLU())
            self.empty_edge = nn.Sequential(nn.Linear(3 * dim, dim), nn.ReLU())
        self.track_node = GatedAccumulation(dim, dim, gate_hidden)
        self.empty_node = GatedAccumulation(dim, dim, gate_hidden)
        self.det_node = GatedAccumulation(raw_dims["det"] if first else dim, dim, gate_hidden, empty_gate=True)

    def forward(self, g: Dict[str, torch.Tensor], layout: DenseLayout) -> Dict[str, torch.Tensor]:
        """``g``: tracks, dets, edges, empty_edges, empty (each in ``layout``'s representation: padded tensors, or
        the test oracle's flat lists)."""
        t, d, t0 = g["tracks"], g["dets"], g["empty"]
        if self.first:
            e, n = self.edge(g["edges"]), self.empty_edge(g["empty_edges"])
        else:
            e = self.edge(torch.cat([g["edges"], layout.track_to_edge(t), layout.det_to_edge(d)], dim=-1))
            n = self.empty_edge(torch.cat([g["empty_edges"], layout.empty_to_det(t0), d], dim=-1))
        t = self.track_node(t, layout.sum_to_tracks(self.track_node.message(e)))
        d = self.det_node(d, layout.sum_to_dets(self.det_node.message(e)) + self.det_node.empty_message(n))
        t0 = self.empty_node(t0, layout.sum_to_empty(self.empty_node.message(n)))
        return {"tracks": t, "dets": d, "edges": e, "empty_edges": n, "empty": t0}


class TrackDetectionGNN(nn.Module):
    """Stack of GNN blocks interleaved with per-element residual blocks (Table 3; ``residual_blocks`` False is
    App. B's "No Interleaved Residual Blocks").

    Raw inputs (dense, K = classes + background; :func:`vis_rgnn.graph_inputs.graph_inputs`): ``edges``
    (B, N, M, K+4+2), ``empty_edges`` (B, M, K+4+1), ``dets`` (B, M, K+4); ``tracks`` (B, N, D); masks (B, N),
    (B, M); ``empty`` (B, D) the empty track's vertex. This module appends the track embedding to ``edges`` and
    t_0 to ``empty_edges`` (Table 3's 175 / 174). Outputs are dense: edges (B, N, M, D), empty_edges (B, M, D),
    tracks (B, N, D), dets (B, M, D) (new tracks start from them) and empty (B, D) (the empty track's recurrent
    input) -- rows of inactive elements are unspecified. The release's parameter names / concatenation orders map
    onto these modules in :mod:`vis_rgnn.convert_release`.
    """

    def __init__(
        self,
        num_classes: int,
        dim: int = 128,
        gate_hidden: int = 32,
        residual_hidden: int = 32,
        num_blocks: int = 2,
        residual_blocks: bool = True,
    ):
        super().__init__()
        k = num_classes + 1
        raw = {"edge": k + 4 + 2 + dim, "empty_edge": k + 4 + 1 + dim, "det": k + 4}
        self.dim = dim
        self.blocks = nn.ModuleList(
            [GNNBlock(dim, gate_hidden, residual_hidden, i == 0, raw) for i in range(num_blocks)]
        )
        kinds = ("tracks", "dets", "edges", "empty_edges", "empty") if residual_blocks else ()
        self.residuals = nn.ModuleList(
            [nn.ModuleDict({k: ResidualReLU(dim, residual_hidden) for k in kinds}) for _ in range(num_blocks)]
        )

    def forward(
        self,
        tracks: torch.Tensor,
        dets: torch.Tensor,
        edges: torch.Tensor,
        empty_edges: torch.Tensor,
        track_mask: torch.Tensor,
        det_mask: torch.Tensor,
        empty: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        layout = DenseLayout(track_mask, det_mask)
        g = {
            "tracks": tracks,
            "dets": dets,
            "edges": torch.cat([edges, layout.track_to_edge(tracks)], dim=-1),
            "empty_edges": torch.cat([empty_edges, layout.empty_to_det(empty)], dim=-1),
            "empty": empty,
        }
        return self.propagate(g, layout)

    def propagate(self, g: Dict[str, torch.Tensor], layout: DenseLayout) -> Dict[str, torch.Tensor]:
        """The GNN blocks, each followed by its residual blocks, on the graph elements ``g`` (see
        :meth:`GNNBlock.forward`)."""
        for block, residual in zip(self.blocks, self.residuals):
            g = block(g, layout)
            g = {kind: residual[kind](x) if kind in residual else x for kind, x in g.items()}
        return g
