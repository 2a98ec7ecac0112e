"""Reference implementations of the VisSTG graph (§3.2) that only serve as test oracles and benchmark baselines.

- :func:`dense_graph_update`: eq. (1)(2) on an all-pairs (N, M) adjacency, written as the paper writes them
  (N_e on every pair, masked messages summed or averaged). ``vis_stg.graph.GraphUpdate`` (edge list + scatter,
  with exact algebraic rewrites) must equal it; ``benchmarks/bench_vis_stg.py`` times it as the dense baseline.
- :func:`edge_lookup`: the edges between every reference instance and given target cells, searched in an edge
  list (the online step computes the edge index from the fixed window layout instead).
"""

from __future__ import annotations

from typing import Tuple

import torch

from vis_stg.graph import GraphEdges, GraphUpdate


def dense_graph_update(
    update: GraphUpdate, h_ref: torch.Tensor, h_pix: torch.Tensor, adjacency: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``update``'s L iterations on an (N, M) boolean ``adjacency``: N_e runs on every pair and non-edges are
    masked. Returns (N, D), (M, D) node features and (N, M, D) edge features; memory O(N·M·D)."""
    n, m = adjacency.shape
    mask = adjacency.unsqueeze(-1).to(h_ref.dtype)
    deg_ref = adjacency.sum(1, keepdim=True).clamp(min=1).to(h_ref.dtype)
    deg_pix = adjacency.sum(0).unsqueeze(1).clamp(min=1).to(h_ref.dtype)
    h_edge = (h_ref[:, None] - h_pix[None]).abs()
    for _ in range(update.num_iters):
        hi, hj = h_ref[:, None].expand(n, m, -1), h_pix[None].expand(n, m, -1)
        h_edge = update.edge_mlp(torch.cat([h_edge, hi, hj], dim=-1))
        msg_ref = (update.node_mlp(torch.cat([h_edge, hi], dim=-1)) * mask).sum(1)
        msg_pix = (update.node_mlp(torch.cat([h_edge, hj], dim=-1)) * mask).sum(0)
        if update.aggregation == "mean":
            msg_ref, msg_pix = msg_ref / deg_ref, msg_pix / deg_pix
        elif update.aggregation == "sum_scaled":
            msg_ref, msg_pix = msg_ref * update.sum_scale, msg_pix * update.sum_scale
        h_ref, h_pix = h_ref + msg_ref, h_pix + msg_pix
    return h_ref, h_pix, h_edge


def edge_lookup(
    edges: GraphEdges, num_ref: int, cells: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges between every reference instance and the target cells ``cells`` (K,) (flattened indices) of one
    level. Returns (ref index (P,), position in ``cells`` (P,), edge index (P,)) for the P existing pairs, by
    sort + binary search."""
    device = cells.device
    if edges.src.numel() == 0 or cells.numel() == 0 or num_ref == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, empty
    sorted_keys, order = torch.sort(edges.dst * num_ref + edges.src)
    query = (cells[None, :] * num_ref + torch.arange(num_ref, device=device)[:, None]).reshape(-1)  # (N*K,)
    pos = torch.searchsorted(sorted_keys, query).clamp(max=len(sorted_keys) - 1)
    found = sorted_keys[pos] == query
    ref_idx = torch.arange(num_ref, device=device)[:, None].expand(num_ref, len(cells)).reshape(-1)
    cell_idx = torch.arange(len(cells), device=device)[None, :].expand(num_ref, len(cells)).reshape(-1)
    return ref_idx[found], cell_idx[found], order[pos[found]]
