"""Spatial-temporal graph between a reference frame k and a target frame t (§3.2).

Per FPN level: reference-instance nodes come from ROIAlign of F_k (:mod:`.graph_nodes`), every pixel
of F_t is a target node, and edges only join an instance to the target pixels of a w×w window around its
centre (:func:`window_edges`). Edge features start as |h_i - h_j| and L iterations of eq. (1)(2)
(:class:`GraphUpdate`) update edges then nodes with messages aggregated over the edge list by the project's
scatter wrapper. Only the pixels touched by an edge take part, so time and memory grow with the number of
edges; all other pixels of F̂_t equal F_t. The all-pairs form of eq. (1)(2) (adjacency matrix) is the test oracle
``tests/vis_stg_graph_reference.py``.

Choices the paper leaves open (documented, configurable where it matters): the MLPs N_e, N_v and the edge
classifier are shared by all levels and all iterations (eq. (1)(2) carry no level/iteration index); the edge
is undirected but its feature orders the endpoints as [instance, pixel]; eq. (2) is read as
h^(l) = h^(l-1) + Σ N_v(...) for both endpoint types, with messages computed from the (l-1) features; the last
layer of N_v starts at zero so F̂_t = F_t at initialisation. ``GRAPH.AGGREGATION``: "sum" (eq. (2)), "sum_scaled"
(the sum times the constant ``GRAPH.SUM_SCALE``: eq. (2) with N_v's output layer scaled), "mean" (÷ each node's
degree: not eq. (2)); a sum grows with a pixel's degree, ~1 in training, more at test (vis_stg/README.md).
Online, ``senders`` can restrict who sends messages (``GRAPH.TEST_SENDER_NMS``: one reference per object, as in
training; :func:`.online_step.message_senders`).

Shapes: N reference instances, D feature dim, per level w² window edges per instance, E edges (all levels
concatenated online), M pixel nodes touched by an edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from projects.graph import scatter_sum

from .graph_nodes import InstanceNodeEncoder

__all__ = [
    "AGGREGATIONS",
    "aggregation_rows",
    "window_edges",
    "InstanceNodeEncoder",
    "GraphUpdate",
    "GraphEdges",
    "SpatialTemporalGraph",
]


#: ``GRAPH.AGGREGATION``: eq. (2)'s sum, the sum times the constant ``GRAPH.SUM_SCALE``, the per-node mean.
AGGREGATIONS = ("sum", "sum_scaled", "mean")


def window_edges(
    centers: torch.Tensor, height: int, width: int, window: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-frame edges from each instance to the target cells of a ``window``×``window`` square (§3.2), as a
    fixed-size list: all N·w² (instance, window cell) pairs, instance-major then raster order.

    ``centers`` (N, 2) integer (x, y) cells of the instance centres on this level. Returns ``src`` (N·w²,)
    instance index, ``dst`` (N·w²,) cell index in the level flattened as (H, W), and ``valid`` (N·w²,): the cell
    is inside the map (the window is clipped at the borders; the cells outside are clamped to the map).
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window sizes must be odd and positive, got {window}")
    half = window // 2
    d = torch.arange(-half, half + 1, device=centers.device)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    xs = centers[:, 0:1] + dx.reshape(1, -1)  # (N, w*w)
    ys = centers[:, 1:2] + dy.reshape(1, -1)
    valid = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    dst = ys.clamp(0, height - 1) * width + xs.clamp(0, width - 1)
    src = torch.arange(centers.shape[0], device=centers.device)[:, None].expand_as(dst)
    return src.reshape(-1), dst.reshape(-1), valid.reshape(-1)


def aggregation_rows(
    index: torch.Tensor, num_nodes: int, edge_mask: Optional[torch.Tensor], like: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The row each edge's message is summed into and each node's degree, as :class:`GraphUpdate` aggregates:
    ``index`` (E,) the edges' endpoints among ``num_nodes`` nodes; a masked edge (``edge_mask`` (E,) bool False)
    goes to one extra row ``num_nodes``, dropped after the sum (no per-edge product). Returns ``into`` (E,) and
    ``degree`` (num_nodes + 1, 1) in ``like``'s dtype and device (the last row counts the masked edges)."""
    into = index if edge_mask is None else torch.where(edge_mask, index, num_nodes)
    return into, scatter_sum(like.new_ones(len(index), 1), into, num_nodes + 1)


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


class GraphUpdate(nn.Module):
    """L iterations of eq. (1) (edge update N_e) and eq. (2) (node update N_v) on a bipartite graph."""

    def __init__(self, dim: int, hidden_dim: int, num_iters: int, aggregation: str = "sum", sum_scale: float = 1.0):
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"GRAPH.AGGREGATION must be one of {AGGREGATIONS}, got {aggregation!r}")
        if not sum_scale > 0:
            raise ValueError(f"GRAPH.SUM_SCALE must be positive, got {sum_scale}")
        self.num_iters, self.aggregation = num_iters, aggregation
        self.sum_scale = float(sum_scale) if aggregation == "sum_scaled" else 1.0
        self.edge_mlp = _mlp(3 * dim, hidden_dim, dim)  # N_e
        self.node_mlp = _mlp(2 * dim, hidden_dim, dim)  # N_v
        nn.init.zeros_(self.node_mlp[-1].weight)
        nn.init.zeros_(self.node_mlp[-1].bias)

    def _fused_weights(self) -> Tuple[torch.Tensor, ...]:
        """The weight blocks and compositions of :meth:`forward` (shapes in ``forward``'s comments), recomputed on
        every call: caching them saved 0.3 % of the R50 online step (``benchmarks/bench_overhead.py`` setup)."""
        (e_w, e_b), (el_w, el_b) = [(m.weight, m.bias) for m in self.edge_mlp[::2]]
        (v_w, v_b), (vl_w, vl_b) = [(m.weight, m.bias) for m in self.node_mlp[::2]]
        dim = (e_w.shape[1]) // 3
        we_edge, we_ref, we_pix = e_w.split(dim, dim=1)
        wv_edge, wv_node = v_w.split(dim, dim=1)
        node_w_ref, node_w_pix = torch.cat([we_ref, wv_node]), torch.cat([we_pix, wv_node])  # (2·hidden, D)
        with torch.autocast(e_w.device.type, enabled=False):  # compositions in the parameters' precision
            next_w = torch.cat([we_edge, wv_edge]) @ el_w  # (2·hidden, hidden): N_e's output layer composed in
            next_b = torch.cat([we_edge @ el_b + e_b, wv_edge @ el_b + v_b])
            msg_w_pix, msg_b_pix = node_w_pix @ vl_w, node_w_pix @ vl_b  # the pixel blocks of a message
        return we_edge, wv_edge, node_w_ref, node_w_pix, next_w, next_b, msg_w_pix, msg_b_pix

    def forward(
        self,
        h_ref: torch.Tensor,
        h_pix: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
        edge_mask: Optional[torch.Tensor] = None,
        final_ref: bool = True,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edge-list path. ``h_ref`` (N, D), ``h_pix`` (M, D), ``src``/``dst`` (E,) indices into them.
        Returns updated (N, D), (M, D) node features and (E, D) final edge features h^e(L).
        ``edge_mask`` (E,) bool: only these edges exist (fixed-size padded edge lists; the others send no
        message and do not count in the mean)."""
        num_ref, num_pix = h_ref.shape[0], h_pix.shape[0]
        size = {"ref": num_ref + 1, "pix": num_pix + 1}
        into, degree = {}, {}  # degree: (N+1 | M+1, 1)
        into["ref"], degree["ref"] = aggregation_rows(src, num_ref, edge_mask, h_ref)
        into["pix"], degree["pix"] = aggregation_rows(dst, num_pix, edge_mask, h_ref)
        scale = None  # "sum": eq. (2) as written
        if self.aggregation == "mean":  # per-node 1 / degree (not eq. (2))
            scale = {k: 1 / v.clamp(min=1) for k, v in degree.items()}
            degree = {k: (v > 0).to(v.dtype) for k, v in degree.items()}
        elif self.aggregation == "sum_scaled":  # eq. (2) times one constant (absorbed by N_v's output layer)
            scale = {k: self.sum_scale for k in degree}
            degree = {k: v * self.sum_scale for k, v in degree.items()}

        def aggregate_hidden(hidden: torch.Tensor, node: str) -> torch.Tensor:
            """Σ (or mean) of N_v's hidden activations u_e over each node's edges, (N+1 | M+1, hidden). The
            aggregated message Σ (W·u_e + b) is W·Σu_e + deg·b: N_v's output layer is linear, so it runs once
            per node instead of once per edge (a node without an edge gets 0)."""
            total = scatter_sum(hidden, into[node], size[node])
            return total if scale is None else total * scale[node]

        # Exact rewrites of eq. (1)(2) that cut the per-edge products (same function, other rounding):
        # - the first layers of N_e([h_e, h_i, h_j]) and N_v([h_e, h_i]) are split by input block; the node
        #   blocks run once per node (instance and pixel blocks of N_e and N_v in one product) and N_v's edge
        #   block is shared by the two messages;
        # - N_e's output layer is composed with the two linear maps that read h_e next (N_v's edge block, and
        #   N_e's edge block of the next iteration): one (E, 2·hidden) product instead of three; h_e itself is
        #   formed only after the last iteration;
        # - N_v's output layer runs after the aggregation (``aggregate_hidden``). The pixel nodes are read only
        #   through their first-layer blocks until the end, so those blocks are updated with N_v's output
        #   layer composed in, and h_pix itself is formed once from the sum of all iterations' messages.
        # ``final_ref=False`` (online inference) skips the instance-node update of the last iteration, which
        # nothing reads there (F̂_t and the edge features are the outputs); h_ref is then that of iteration L-1.
        hidden = self.edge_mlp[0].out_features
        e_first, e_last = self.edge_mlp[0], self.edge_mlp[2]
        v_first, v_last = self.node_mlp[0], self.node_mlp[2]
        we_edge, wv_edge, node_w_ref, node_w_pix, next_w, next_b, msg_w_pix, msg_b_pix = self._fused_weights()
        h_edge = (h_ref[src] - h_pix[dst]).abs()  # h_e(0)
        edge_in = F.linear(h_edge, we_edge, e_first.bias)  # N_e's edge block
        pix_blocks = F.linear(h_pix, node_w_pix)  # (M, 2·hidden): [N_e block | N_v block] of each pixel node
        # The in-place updates below see no autocast: their operands take the products' dtype (bf16 / fp16 under
        # autocast); the node features keep theirs (the messages are added to them, as in eq. (2)).
        ct = pix_blocks.dtype
        msg_w_pix, msg_b_pix, v_w, v_b = (t.to(ct) for t in (msg_w_pix, msg_b_pix, v_last.weight, v_last.bias))
        deg_ref, deg_pix = degree["ref"][:-1].to(ct), degree["pix"][:-1, 0].to(ct)  # (N, 1), (M,): bias counts
        pix_hidden_sum = None  # Σ over iterations of the pixels' aggregated hidden activations, (M+1, hidden)
        for it in range(self.num_iters):
            last = it == self.num_iters - 1
            # (E, 2·hidden): [N_e block | N_v block] of each edge's instance and pixel node
            ref_in = F.linear(h_ref, node_w_ref).index_select(0, src)
            pix_in = pix_blocks.index_select(0, dst)
            act = (edge_in + ref_in[:, :hidden]).add_(pix_in[:, :hidden]).relu_()  # N_e's hidden layer
            if last:
                h_edge = e_last(act)  # h_e(L), the edge classifier's input
                shared = F.linear(h_edge, wv_edge, v_first.bias)
            else:
                edge_in, shared = F.linear(act, next_w, next_b).split(hidden, dim=1)
            pix_hidden = aggregate_hidden((shared + pix_in[:, hidden:]).relu_(), "pix")
            pix_hidden_sum = pix_hidden if pix_hidden_sum is None else pix_hidden_sum + pix_hidden
            if not last:  # the pixel blocks of h_pix + message, for the next iteration (in place: no copies)
                pix_blocks = pix_blocks.addmm_(pix_hidden[:-1], msg_w_pix.t()).addr_(deg_pix, msg_b_pix)
            if not last or final_ref:
                ref_hidden = aggregate_hidden((shared + ref_in[:, hidden:]).relu_(), "ref")[:-1]
                h_ref = h_ref + (F.linear(ref_hidden, v_w) + deg_ref * v_b)  # N rows: no need to fuse
        if pix_hidden_sum is not None:
            h_pix = h_pix + F.linear(pix_hidden_sum[:-1], v_w).addr_(deg_pix, v_b, alpha=self.num_iters)
        return h_ref, h_pix, h_edge


@dataclass
class GraphEdges:
    """The edges of one level: ``src`` (E,) reference instance, ``dst`` (E,) target cell in the level flattened
    as (B, H, W), ``features`` (E, D) final edge features h^e(L) (eq. (1) after L iterations)."""

    src: torch.Tensor
    dst: torch.Tensor
    features: torch.Tensor
    # Fixed-size layout of online inference (:meth:`SpatialTemporalGraph.forward_online`): E = N·w², edge
    # r·w² + i·w + j joins instance r to the cell (cx_r + j - w//2, cy_r + i - w//2); ``valid`` (E,) marks the
    # cells inside the map, ``ref_cells`` (N, 2) are the instance centre cells (x, y), ``window`` is w.
    valid: Optional[torch.Tensor] = None
    ref_cells: Optional[torch.Tensor] = None
    window: int = 0


class SpatialTemporalGraph(nn.Module):
    """Builds and updates the per-level graphs of §3.2; returns F̂_t and the final edges of every level."""

    def __init__(
        self,
        dim: int,
        strides: Sequence[int],
        window_sizes: Sequence[int],
        hidden_dim: int = 256,
        num_iters: int = 3,
        aggregation: str = "sum",
        pooler_resolution: int = 7,
        pooler_sampling_ratio: int = 0,
        node_pool: str = "avg",
        sum_scale: float = 1.0,
    ):
        super().__init__()
        if len(window_sizes) != len(strides):
            raise ValueError(f"GRAPH.WINDOW_SIZES needs one size per level ({len(strides)}), got {window_sizes}")
        self.strides, self.window_sizes = list(strides), list(window_sizes)
        self.node_encoder = InstanceNodeEncoder(dim, pooler_resolution, pooler_sampling_ratio, node_pool)
        self.update = GraphUpdate(dim, hidden_dim, num_iters, aggregation, sum_scale)

    def encode_nodes(self, features_k: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Reference nodes of frame k: per level (N, D) from per-image (N_b, 4) boxes."""
        return self.node_encoder(features_k, boxes, self.strides)

    def forward(
        self,
        ref_nodes: Sequence[torch.Tensor],
        ref_centers: torch.Tensor,
        ref_batch: torch.Tensor,
        features_t: Sequence[torch.Tensor],
    ) -> Tuple[List[torch.Tensor], List[GraphEdges]]:
        """``ref_nodes``: per level (N, D); ``ref_centers`` (N, 2) box centres (x, y) in input pixels;
        ``ref_batch`` (N,) image index; ``features_t``: per level (B, D, H, W).
        Returns F̂_t (per level, same shapes as ``features_t``) and the level's :class:`GraphEdges`."""
        fused, edges = [], []
        for lvl, feat in enumerate(features_t):
            b, d, h, w = feat.shape
            stride, window = self.strides[lvl], self.window_sizes[lvl]
            cells = (ref_centers / stride).floor().long()
            cells[:, 0].clamp_(0, w - 1)
            cells[:, 1].clamp_(0, h - 1)
            src, dst, valid = window_edges(cells, h, w, window)
            dst = dst + ref_batch[src] * (h * w)  # cell index in the level flattened as (B, H, W)
            src, dst = src[valid], dst[valid]  # training: only the edges inside the map
            flat = feat.permute(0, 2, 3, 1).reshape(b * h * w, d)
            # Only pixels with an edge take part; their local index replaces the global one.
            active, dst_local = torch.unique(dst, return_inverse=True)
            _, h_pix, h_edge = self.update(ref_nodes[lvl], flat[active], src, dst_local)
            flat = flat.index_copy(0, active, h_pix)
            fused.append(flat.view(b, h, w, d).permute(0, 3, 1, 2))
            edges.append(GraphEdges(src, dst, h_edge))
        return fused, edges

    def forward_online(
        self,
        ref_nodes: Sequence[torch.Tensor],
        ref_centers: torch.Tensor,
        features_t: Sequence[torch.Tensor],
        senders: Optional[torch.Tensor] = None,
    ) -> Tuple[List[torch.Tensor], List[GraphEdges]]:
        """:meth:`forward` for one target frame (B = 1) without data-dependent shapes (no host sync): every
        instance keeps all w² window edges (those outside the map masked, :func:`window_edges`) and the
        node update runs on the pixels they reach (E slots, distinct pixels found by sorting; all other pixels
        keep F̂_t = F_t, as in :meth:`forward`). ``senders`` (N,) bool: only these instances send messages (their
        edges are masked in the update, not in the returned layout). Returns F̂_t and the levels' edges."""
        # All levels form one edge list (N_e, N_v are shared by the levels): one matrix product per layer and
        # iteration instead of one per level; instance nodes and pixel slots are offset level by level.
        levels, srcs, dsts, valids, pix = [], [], [], [], []
        num_ref = ref_centers.shape[0]
        slot_offset = 0
        for lvl, feat in enumerate(features_t):
            b, d, h, w = feat.shape
            if b != 1:
                raise ValueError(f"forward_online takes one target frame, got a batch of {b}")
            stride, window = self.strides[lvl], self.window_sizes[lvl]
            cells = (ref_centers / stride).floor().long()
            cells = torch.stack([cells[:, 0].clamp(0, w - 1), cells[:, 1].clamp(0, h - 1)], dim=1)
            src, dst, valid = window_edges(cells, h, w, window)
            # Pixel nodes: one slot per distinct target pixel (sort + first occurrence, the fixed-size form of
            # torch.unique), E slots allocated of which the first U are used; only those take part.
            sorted_dst, order = dst.sort()
            first = torch.ones_like(sorted_dst, dtype=torch.bool)
            first[1:] = sorted_dst[1:] != sorted_dst[:-1]
            slot_sorted = first.long().cumsum(0) - 1  # (E,) slot of each sorted edge
            dst_local = torch.empty_like(dst).scatter_(0, order, slot_sorted)
            pixel_of_slot = torch.zeros_like(dst).scatter_(0, slot_sorted, sorted_dst)
            flat = feat[0].view(d, h * w)
            levels.append((flat, sorted_dst, slot_sorted, slot_offset, src, dst, valid, cells, window))
            srcs.append(src + lvl * num_ref)
            dsts.append(dst_local + slot_offset)
            valids.append(valid if senders is None else valid & senders[src])
            pix.append(flat.index_select(1, pixel_of_slot).t())
            slot_offset += dst.numel()
        _, h_pix, h_edge = self.update(
            torch.cat(list(ref_nodes)),
            torch.cat(pix),
            torch.cat(srcs),
            torch.cat(dsts),
            edge_mask=torch.cat(valids),
            final_ref=False,
        )
        fused, edges = [], []
        for flat, sorted_dst, slot_sorted, offset, src, dst, valid, cells, window in levels:
            d, hw = flat.shape
            out = flat.clone()
            # every edge writes its slot's value (edges sharing a pixel write the same value)
            out.index_copy_(1, sorted_dst, h_pix.index_select(0, offset + slot_sorted).t().to(out.dtype))
            fused.append(out.view(1, d, *features_t[len(fused)].shape[-2:]))
            edges.append(GraphEdges(src, dst, h_edge[offset : offset + dst.numel()], valid, cells, window))
        return fused, edges
