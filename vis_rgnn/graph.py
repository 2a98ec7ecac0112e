"""The graph neural network over tracks and detections (§3.1, eq. 1, App. A.2 Table 3, App. A.3).

Graph elements (one graph per video in the batch):

- track nodes t_i (the gated track embeddings of the previous frame), detection nodes d_j,
- track-detection edges e_ij, the empty track t_0 (a learned embedding, reset every frame) and its edges
  n_j to every detection ("potential new track" embeddings). The empty track is treated like a track but
  every layer touching it has its own weights (§3.1).

A GNN block (Battaglia et al. 2018 with gated accumulation) computes

    e_ij <- f_e([e_ij, t_i, d_j])                    n_j <- f_n([n_j, t_0, d_j])                    (1a)
    t_i  <- f_t([t_i, sum_j g_t(e_ij) * e_ij])        t_0 <- f_0([t_0, sum_j g_0(n_j) * n_j])         (1b)
    d_j  <- f_d([d_j, sum_i g_d(e_ij) * e_ij + g_d(n_j) * n_j])                                      (1c)

with f_* = Linear + ReLU and g_* = Linear(D, 32) + ReLU + Linear(32, D) + Sigmoid. In the first block the
edges are created from raw inputs instead (Table 3: Linear(K+4+2+D, D) + ReLU + Residual(D, 32); for n_j the
input is K+4+1+D) and the detection update reads the raw detection input (K+4) in place of d_j, which gives
Table 3's Linear(173, 128) for K = 41. Each block is followed by residual blocks on every element type.

The graph is held in fixed-size padded tensors with masks (:class:`DenseLayout`, App. A.3): every track slot is
paired with every detection slot, and the masked sums keep padded elements from influencing active ones. The
same GNN on flat lists of the active elements, reduced with ``projects.graph.scatter_sum``, is the test oracle
(``tests/rgnn_references.py``).

Shapes: B videos, N track slots, M detection slots (padded), F / D feature dims, K+1 classes (background
last).
"""

from __future__ import annotations

from typing import Dict, Optional

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
    residual block with a ReLU after the sum (``MODEL.RGNN.GNN.RELEASE_BLOCKS``)."""

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


class GatedAccumulation(nn.Module):
    """Node update of eq. (1b)/(1c): node <- ReLU(W [node, sum_k g(e_k) * e_k]), g: D -> hidden -> D -> sigmoid."""

    def __init__(self, node_dim: int, dim: int, gate_hidden: int, empty_gate: bool = False):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, gate_hidden), nn.ReLU(), nn.Linear(gate_hidden, dim), nn.Sigmoid())
        self.update = nn.Linear(node_dim + dim, dim)
        # A detection's own gate for its new-track edge (the release's DetFanatic: bkgdet_sigmoid next to
        # trkdet_sigmoid); without it the track-edge gate is shared.
        if empty_gate:
            self.empty_gate = nn.Sequential(
                nn.Linear(dim, gate_hidden), nn.ReLU(), nn.Linear(gate_hidden, dim), nn.Sigmoid()
            )

    def message(self, edges: torch.Tensor) -> torch.Tensor:
        return self.gate(edges) * edges

    def empty_message(self, empty_edges: torch.Tensor) -> torch.Tensor:
        """Gated new-track edge n_j for its detection's update (own gate when ``empty_gate``)."""
        gate = self.empty_gate if hasattr(self, "empty_gate") else self.gate
        return gate(empty_edges) * empty_edges

    def forward(self, node: torch.Tensor, accumulated: torch.Tensor) -> torch.Tensor:
        return F.relu(self.update(torch.cat([node, accumulated], dim=-1)))


class GNNBlock(nn.Module):
    """One block of eq. (1). ``first``: edges / new-track edges are created from raw inputs (Table 3, block 1).
    ``last``: only e, n and t are updated -- Table 3 also lists detection and empty-track updates for block 2,
    but no head reads them, so they are omitted (unused parameters would also break DistributedDataParallel) --
    unless ``update_all`` (the release's GraphNet, read by the recurrent empty track and new tracks).
    ``residual``: the residual block class of the first block's edge MLPs."""

    def __init__(
        self,
        dim: int,
        gate_hidden: int,
        residual_hidden: int,
        first: bool,
        last: bool,
        raw_dims: Dict[str, int],
        last_updates_dets: bool = False,
        det_empty_gate: bool = False,
        update_all: bool = False,
        residual: type = ResidualMLP,
    ):
        super().__init__()
        last = last and not update_all
        self.first, self.last, self.last_updates_dets = first, last, last_updates_dets
        if first:
            self.edge = nn.Sequential(nn.Linear(raw_dims["edge"], dim), nn.ReLU(), residual(dim, residual_hidden))
            self.empty_edge = nn.Sequential(
                nn.Linear(raw_dims["empty_edge"], dim), nn.ReLU(), residual(dim, residual_hidden)
            )
        else:
            self.edge = nn.Sequential(nn.Linear(3 * dim, dim), nn.ReLU())
            self.empty_edge = nn.Sequential(nn.Linear(3 * dim, dim), nn.ReLU())
        self.track_node = GatedAccumulation(dim, dim, gate_hidden)
        if not last:  # in the last block these would feed no output (the heads read e, n and t only)
            self.empty_node = GatedAccumulation(dim, dim, gate_hidden)
        if not last or last_updates_dets:  # the last block's detections feed new tracks (NEW_TRACK_INIT detection)
            self.det_node = GatedAccumulation(raw_dims["det"] if first else dim, dim, gate_hidden, det_empty_gate)

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
        if self.last and not self.last_updates_dets:
            return {"tracks": t, "edges": e, "empty_edges": n}
        d = self.det_node(d, layout.sum_to_dets(self.det_node.message(e)) + self.det_node.empty_message(n))
        if self.last:
            return {"tracks": t, "dets": d, "edges": e, "empty_edges": n}
        t0 = self.empty_node(t0, layout.sum_to_empty(self.empty_node.message(n)))
        return {"tracks": t, "dets": d, "edges": e, "empty_edges": n, "empty": t0}


class TrackDetectionGNN(nn.Module):
    """Stack of GNN blocks interleaved with per-element residual blocks (Table 3), plus the learned empty
    track embedding t_0.

    Raw inputs (dense, K = classes + background): ``edges`` (B, N, M, K+4+2) = [detection class probs, box
    offsets, IoU, appearance log-likelihood]; ``empty_edges`` (B, M, K+4+1) = [class probs, box, log-likelihood
    under the empty track's appearance]; ``dets`` (B, M, K+4); ``tracks`` (B, N, D); masks (B, N), (B, M).
    This module appends the track embedding to ``edges`` and t_0 to ``empty_edges`` (Table 3's 175 / 174).
    Outputs are dense: edges (B, N, M, D), empty_edges (B, M, D), tracks (B, N, D) -- rows of inactive elements are
    unspecified.

    ``new_track_init`` "detection" (``MODEL.RGNN.NEW_TRACK_INIT``; the authors' release, ``rgnn.py`` starts a
    track from ``det_vertices``, and the paper, "we initialize a new track with the embedding of that
    detection"): the last block and its residual also update the detections, output as dets (B, M, D).
    ``det_empty_gate`` (``MODEL.RGNN.GNN.DET_EMPTY_GATE``; the release): a detection's update gates its new-track
    edge with its own gate instead of the track-edge gate.
    ``release_blocks`` (``MODEL.RGNN.GNN.RELEASE_BLOCKS``; the release's GraphNet x 4): every block and residual
    block updates all five element types, and the residual blocks end with a ReLU (``cm.Residual``).
    ``recurrent_empty`` (``MODEL.RGNN.EMPTY_TRACK`` "recurrent"): no learned t_0; :meth:`forward` takes the
    empty track's vertex (B, D) and returns its final one as ``empty`` (also with ``release_blocks``).
    The release's parameter names / concatenation orders map onto these modules in
    :mod:`vis_rgnn.convert_release`.
    """

    def __init__(
        self,
        num_classes: int,
        dim: int = 128,
        gate_hidden: int = 32,
        residual_hidden: int = 32,
        num_blocks: int = 2,
        residual_blocks: bool = True,
        new_track_init: str = "new_track_edge",
        det_empty_gate: bool = False,
        release_blocks: bool = False,
        recurrent_empty: bool = False,
    ):
        super().__init__()
        if new_track_init not in ("new_track_edge", "detection"):
            raise ValueError(
                f"MODEL.RGNN.NEW_TRACK_INIT must be 'new_track_edge' or 'detection', got {new_track_init!r}"
            )
        self.new_track_init = new_track_init
        dets_out = new_track_init == "detection"
        k = num_classes + 1
        raw = {"edge": k + 4 + 2 + dim, "empty_edge": k + 4 + 1 + dim, "det": k + 4}
        self.dim = dim
        self.update_all = update_all = release_blocks or recurrent_empty
        self.recurrent_empty = recurrent_empty
        if not recurrent_empty:
            self.empty_track = nn.Parameter(torch.zeros(dim))
        residual = ResidualReLU if release_blocks else ResidualMLP
        self.blocks = nn.ModuleList(
            [
                GNNBlock(
                    dim,
                    gate_hidden,
                    residual_hidden,
                    first=i == 0,
                    last=i == num_blocks - 1,
                    raw_dims=raw,
                    last_updates_dets=dets_out,
                    det_empty_gate=det_empty_gate,
                    update_all=update_all,
                    residual=residual,
                )
                for i in range(num_blocks)
            ]
        )
        every, last = ("tracks", "dets", "edges", "empty_edges", "empty"), ("tracks", "edges", "empty_edges")
        if dets_out:
            last = last + ("dets",)
        if update_all:
            last = every
        self.residuals = nn.ModuleList(
            [
                nn.ModuleDict(
                    {k: residual(dim, residual_hidden) for k in (last if i == num_blocks - 1 else every)}
                    if residual_blocks
                    else {}
                )
                for i in range(num_blocks)
            ]
        )

    def forward(
        self,
        tracks: torch.Tensor,
        dets: torch.Tensor,
        edges: torch.Tensor,
        empty_edges: torch.Tensor,
        track_mask: torch.Tensor,
        det_mask: torch.Tensor,
        empty: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """``empty`` (B, D): the empty track's vertex (required with ``recurrent_empty``, ignored otherwise)."""
        layout = DenseLayout(track_mask, det_mask)
        t0 = self.empty_vertex(tracks.shape[0], empty)
        g = {
            "tracks": tracks,
            "dets": dets,
            "edges": torch.cat([edges, layout.track_to_edge(tracks)], dim=-1),
            "empty_edges": torch.cat([empty_edges, layout.empty_to_det(t0)], dim=-1),
            "empty": t0,
        }
        g = self.propagate(g, layout)
        out = {"tracks": g["tracks"], "edges": g["edges"], "empty_edges": g["empty_edges"]}
        if "dets" in g and (self.new_track_init == "detection" or self.update_all):
            out["dets"] = g["dets"]  # (B, M, D) final detection vertices
        if self.update_all:
            out["empty"] = g["empty"]  # (B, D) final empty-track vertex
        return out

    def empty_vertex(self, batch_size: int, empty: Optional[torch.Tensor]) -> torch.Tensor:
        """The empty track's input vertex t_0 (B, D): the learned embedding, or ``empty`` with ``recurrent_empty``."""
        if not self.recurrent_empty:
            return self.empty_track.expand(batch_size, -1)
        if empty is None:
            raise ValueError("TrackDetectionGNN(recurrent_empty=True) needs the empty track's vertex (B, D)")
        return empty

    def propagate(self, g: Dict[str, torch.Tensor], layout: DenseLayout) -> Dict[str, torch.Tensor]:
        """The GNN blocks, each followed by its residual blocks, on the graph elements ``g`` (see
        :meth:`GNNBlock.forward`)."""
        for block, residual in zip(self.blocks, self.residuals):
            g = block(g, layout)
            g = {kind: residual[kind](x) if kind in residual else x for kind, x in g.items()}
        return g
