"""VisSTG spatial-temporal graph (§3.2): window edges, eq. (1)(2) update, edge lookup."""

import pytest
import torch

from tests.vis_stg_graph_reference import dense_graph_update, edge_lookup
from vis_stg.graph import (
    AGGREGATIONS,
    GraphEdges,
    GraphUpdate,
    SpatialTemporalGraph,
    window_edges,
)
from vis_stg.online_step import message_senders

torch.set_num_threads(1)


def _cells(dst, h, w):
    """Global cell index -> set of (b, y, x)."""
    return {(int(d) // (h * w), int(d) % (h * w) // w, int(d) % w) for d in dst}


def clipped_window_edges(centers, batch_idx, height, width, window):
    """The valid edges of :func:`window_edges`, cells indexed in the batch flattened as (B, H, W) (the training
    path of ``SpatialTemporalGraph.forward``)."""
    src, dst, valid = window_edges(centers, height, width, window)
    assert len(src) == len(centers) * window**2  # fixed size: all N·w² pairs
    dst = dst + batch_idx[src] * (height * width)
    return src[valid], dst[valid]


def test_window_edges_interior_count_and_positions():
    src, dst = clipped_window_edges(torch.tensor([[5, 4]]), torch.tensor([0]), height=10, width=12, window=3)
    assert len(src) == 9 and (src == 0).all()
    assert _cells(dst, 10, 12) == {(0, y, x) for y in (3, 4, 5) for x in (4, 5, 6)}


@pytest.mark.parametrize(
    "center,expected",
    [((0, 0), 9), ((11, 9), 9), ((0, 4), 15), ((1, 1), 16), ((6, 0), 15), ((2, 2), 25)],
)
def test_window_edges_clipped_at_borders(center, expected):
    # 5x5 window on a 10x12 grid: 3x3 at a corner, 3x5 on a border, 4x4 one cell in, full inside.
    src, dst = clipped_window_edges(torch.tensor([center]), torch.tensor([0]), height=10, width=12, window=5)
    assert len(dst) == expected
    cx, cy = center
    assert _cells(dst, 10, 12) == {
        (0, y, x) for y in range(max(cy - 2, 0), min(cy + 3, 10)) for x in range(max(cx - 2, 0), min(cx + 3, 12))
    }


def test_window_edges_batches_and_window_one():
    centers = torch.tensor([[1, 1], [3, 2], [0, 0]])
    src, dst = clipped_window_edges(centers, torch.tensor([0, 1, 1]), height=4, width=5, window=1)
    assert src.tolist() == [0, 1, 2]
    assert _cells(dst, 4, 5) == {(0, 1, 1), (1, 2, 3), (1, 0, 0)}
    with pytest.raises(ValueError):
        window_edges(centers, 4, 5, window=4)


def _random_graph(n=4, m=30, e=50, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    pairs = torch.randperm(n * m, generator=g)[:e]
    src, dst = pairs // m, pairs % m
    return torch.randn(n, d, generator=g), torch.randn(m, d, generator=g), src, dst


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("num_iters", [0, 1, 3])
def test_scatter_update_equals_dense_reference(aggregation, num_iters):
    torch.manual_seed(0)
    update = GraphUpdate(8, 16, num_iters, aggregation, sum_scale=0.25).double()
    for p in update.parameters():  # non-zero N_v so that the nodes actually change
        torch.nn.init.normal_(p, std=0.3)
    h_ref, h_pix, src, dst = (t.double() if t.is_floating_point() else t for t in _random_graph())
    ref_s, pix_s, edge_s = update(h_ref, h_pix, src, dst)
    adjacency = torch.zeros(h_ref.shape[0], h_pix.shape[0], dtype=torch.bool)
    adjacency[src, dst] = True
    ref_d, pix_d, edge_d = dense_graph_update(update, h_ref, h_pix, adjacency)
    torch.testing.assert_close(ref_s, ref_d, atol=1e-5, rtol=0)
    torch.testing.assert_close(pix_s, pix_d, atol=1e-5, rtol=0)
    torch.testing.assert_close(edge_s, edge_d[src, dst], atol=1e-5, rtol=0)
    if num_iters > 0:
        assert not torch.allclose(pix_s, h_pix)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_masked_edges_send_nothing_and_final_ref_only_skips_the_last_instance_update(aggregation):
    torch.manual_seed(2)
    update = GraphUpdate(8, 12, 3, aggregation, sum_scale=0.25).double()
    for p in update.parameters():
        torch.nn.init.normal_(p, std=0.3)
    h_ref, h_pix, src, dst = (t.double() if t.is_floating_point() else t for t in _random_graph(seed=5))
    keep = torch.rand(len(src), generator=torch.Generator().manual_seed(0)) > 0.4
    ref_m, pix_m, edge_m = update(h_ref, h_pix, src, dst, edge_mask=keep)
    ref_k, pix_k, edge_k = update(h_ref, h_pix, src[keep], dst[keep])  # the graph without the masked edges
    torch.testing.assert_close(ref_m, ref_k, atol=1e-9, rtol=0)
    torch.testing.assert_close(pix_m, pix_k, atol=1e-9, rtol=0)
    torch.testing.assert_close(edge_m[keep], edge_k, atol=1e-9, rtol=0)
    # final_ref=False: same pixels and edges; the instances stop at iteration L-1
    ref_f, pix_f, edge_f = update(h_ref, h_pix, src, dst, edge_mask=keep, final_ref=False)
    torch.testing.assert_close(pix_f, pix_m, atol=1e-9, rtol=0)
    torch.testing.assert_close(edge_f, edge_m, atol=1e-9, rtol=0)
    update.num_iters = 2
    ref_2, _, _ = update(h_ref, h_pix, src, dst, edge_mask=keep)
    torch.testing.assert_close(ref_f, ref_2, atol=1e-9, rtol=0)


def test_sum_scaled_is_eq2_with_the_constant_in_n_v_output_layer():
    """Eq. (2) with a constant c on the sum = eq. (2) with N_v's output layer (W, b) replaced by (cW, cb): the
    constant is a reparametrisation of N_v, unlike the mean's per-node 1 / degree."""
    torch.manual_seed(3)
    scaled = GraphUpdate(8, 16, 3, "sum_scaled", sum_scale=0.125).double()
    for p in scaled.parameters():
        torch.nn.init.normal_(p, std=0.3)
    plain = GraphUpdate(8, 16, 3, "sum").double()
    plain.load_state_dict(scaled.state_dict())
    with torch.no_grad():
        plain.node_mlp[2].weight.mul_(0.125), plain.node_mlp[2].bias.mul_(0.125)
    h_ref, h_pix, src, dst = (t.double() if t.is_floating_point() else t for t in _random_graph(seed=7))
    for a, b in zip(scaled(h_ref, h_pix, src, dst), plain(h_ref, h_pix, src, dst)):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=0)
    mean = GraphUpdate(8, 16, 3, "mean").double()
    mean.load_state_dict(plain.state_dict())
    assert not torch.allclose(mean(h_ref, h_pix, src, dst)[1], plain(h_ref, h_pix, src, dst)[1])
    with pytest.raises(ValueError, match="SUM_SCALE"):
        GraphUpdate(8, 16, 1, "sum_scaled", sum_scale=0.0)
    with pytest.raises(ValueError, match="AGGREGATION"):
        GraphUpdate(8, 16, 1, "max")


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_pixel_message_grows_with_duplicate_references_only_for_sums(aggregation):
    """One iteration, one pixel, k identical reference instances (duplicate detections of one object): the sums
    of eq. (2) send k times the message of one reference, the mean the same message (the test-time degree
    effect that the aggregation choice is about)."""
    torch.manual_seed(5)
    update = GraphUpdate(8, 16, 1, aggregation, sum_scale=0.25).double()
    for p in update.parameters():
        torch.nn.init.normal_(p, std=0.3)
    h_ref, h_pix = torch.randn(1, 8, dtype=torch.double), torch.randn(1, 8, dtype=torch.double)
    deltas = []
    for k in (1, 4):
        src, dst = torch.arange(k), torch.zeros(k, dtype=torch.long)
        _, pix, _ = update(h_ref.expand(k, 8), h_pix, src, dst)
        deltas.append(pix - h_pix)
    torch.testing.assert_close(deltas[1], deltas[0] * (1 if aggregation == "mean" else 4), atol=1e-9, rtol=0)


def test_scatter_update_float32_matches_dense_and_is_edge_order_invariant():
    torch.manual_seed(1)
    update = GraphUpdate(dim=8, hidden_dim=16, num_iters=3)
    for p in update.parameters():
        torch.nn.init.normal_(p, std=0.2)
    h_ref, h_pix, src, dst = _random_graph(seed=3)
    ref_a, pix_a, edge_a = update(h_ref, h_pix, src, dst)
    adjacency = torch.zeros(h_ref.shape[0], h_pix.shape[0], dtype=torch.bool)
    adjacency[src, dst] = True
    _, pix_d, _ = dense_graph_update(update, h_ref, h_pix, adjacency)
    torch.testing.assert_close(pix_a, pix_d, atol=1e-5, rtol=1e-5)

    perm = torch.randperm(len(src))
    ref_b, pix_b, edge_b = update(h_ref, h_pix, src[perm], dst[perm])
    torch.testing.assert_close(ref_a, ref_b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pix_a, pix_b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(edge_a[perm], edge_b, atol=1e-5, rtol=1e-5)


def test_graph_update_starts_as_identity_on_nodes_and_has_gradients():
    update = GraphUpdate(dim=8, hidden_dim=16, num_iters=2)
    h_ref, h_pix, src, dst = _random_graph()
    h_ref.requires_grad_()
    _, pix, edge = update(h_ref, h_pix, src, dst)
    torch.testing.assert_close(pix, h_pix)  # N_v's last layer starts at zero: F̂_t = F_t at initialisation
    (pix.sum() + edge.sum()).backward()
    assert all(p.grad is not None for p in update.parameters())
    assert h_ref.grad is not None and h_ref.grad.abs().sum() > 0


def _graph_inputs(b=2, d=8, shapes=((12, 16), (6, 8))):
    feats_k = [torch.randn(b, d, h, w) for h, w in shapes]
    feats_t = [torch.randn(b, d, h, w, requires_grad=True) for h, w in shapes]
    boxes = [torch.tensor([[8.0, 8.0, 40.0, 30.0], [60.0, 40.0, 100.0, 90.0]]), torch.tensor([[0.0, 0.0, 20.0, 20.0]])]
    return feats_k, feats_t, boxes


@pytest.mark.parametrize("node_pool", ["avg", "linear"])
def test_spatial_temporal_graph_shapes_gradients_and_locality(node_pool):
    torch.manual_seed(0)
    graph = SpatialTemporalGraph(
        8, strides=[8, 16], window_sizes=[5, 3], hidden_dim=16, num_iters=2, pooler_resolution=3, node_pool=node_pool
    )
    torch.nn.init.normal_(graph.update.node_mlp[-1].weight, std=0.1)
    feats_k, feats_t, boxes = _graph_inputs()
    nodes = graph.encode_nodes(feats_k, boxes)
    assert [n.shape for n in nodes] == [(3, 8), (3, 8)]
    centers = torch.cat([(b[:, :2] + b[:, 2:]) / 2 for b in boxes])
    fused, edges = graph(nodes, centers, torch.tensor([0, 0, 1]), feats_t)
    assert [f.shape for f in fused] == [f.shape for f in feats_t]
    # P3 (5x5): two full windows + one 4x4 at the corner; P4 (3x3): two full + one 2x2.
    assert [len(e.src) for e in edges] == [25 + 25 + 16, 9 + 9 + 4]
    assert all(e.features.shape == (len(e.src), 8) for e in edges)
    # Memory and time scale with edges: pixels without an edge keep F_t exactly.
    touched = torch.zeros(2 * 12 * 16, dtype=torch.bool)
    touched[edges[0].dst] = True
    flat_in = feats_t[0].permute(0, 2, 3, 1).reshape(-1, 8)
    flat_out = fused[0].permute(0, 2, 3, 1).reshape(-1, 8)
    assert torch.equal(flat_out[~touched], flat_in[~touched])
    assert not torch.allclose(flat_out[touched], flat_in[touched])
    (sum(f.sum() for f in fused) + sum(e.features.sum() for e in edges)).backward()
    assert feats_t[0].grad is not None
    assert all(p.grad is not None for p in graph.parameters())


def test_graph_without_reference_instances_returns_features_unchanged():
    graph = SpatialTemporalGraph(8, strides=[8, 16], window_sizes=[5, 3])
    _, feats_t, _ = _graph_inputs()
    fused, edges = graph([torch.zeros(0, 8)] * 2, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), feats_t)
    assert all(torch.equal(a, b) for a, b in zip(fused, feats_t))
    assert all(len(e.src) == 0 for e in edges)


def test_edge_lookup_finds_exactly_the_existing_pairs():
    src, dst = clipped_window_edges(torch.tensor([[2, 2], [6, 3]]), torch.tensor([0, 0]), height=6, width=8, window=3)
    edges = GraphEdges(src, dst, torch.arange(len(src)).float()[:, None])
    cells = torch.tensor([2 * 8 + 2, 3 * 8 + 6, 0, 2 * 8 + 3])  # centre of 0, centre of 1, far away, near 0
    ref_idx, cell_idx, edge_idx = edge_lookup(edges, 2, cells)
    assert sorted(zip(ref_idx.tolist(), cell_idx.tolist())) == [(0, 0), (0, 3), (1, 1)]
    assert (src[edge_idx] == ref_idx).all() and (dst[edge_idx] == cells[cell_idx]).all()
    empty = edge_lookup(GraphEdges(src[:0], dst[:0], torch.zeros(0, 1)), 2, cells)
    assert all(len(x) == 0 for x in empty)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_online_fixed_layout_equals_the_edge_list_graph(aggregation):
    torch.manual_seed(0)
    graph = SpatialTemporalGraph(8, [8, 16], [5, 3], 16, 2, aggregation, sum_scale=0.25)
    with torch.no_grad():
        for p in graph.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # N_v starts at zero: make the fusion non-trivial
    feats = [torch.randn(1, 8, 6, 9), torch.randn(1, 8, 3, 5)]
    nodes = [torch.randn(4, 8), torch.randn(4, 8)]
    centers = torch.tensor([[2.0, 3.0], [70.0, 45.0], [10.0, 6.0], [40.0, 20.0]])  # two at borders, overlapping
    fused, edges = graph(nodes, centers, torch.zeros(4, dtype=torch.long), feats)
    fused_online, edges_online = graph.forward_online(nodes, centers, feats)
    for a, b in zip(fused, fused_online):
        assert not torch.allclose(a, feats[0] if a.shape == feats[0].shape else feats[1])
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    for e, o in zip(edges, edges_online):  # same edges (the valid ones, in the same order), same features
        assert o.valid.sum() == len(e.src)
        assert o.src[o.valid].tolist() == e.src.tolist() and o.dst[o.valid].tolist() == e.dst.tolist()
        torch.testing.assert_close(o.features[o.valid], e.features, atol=1e-5, rtol=1e-5)


def test_composed_weights_follow_parameter_updates():
    """The composed weights of the update are not stale after an in-place update (optimizer step,
    load_state_dict) without autograd."""
    torch.manual_seed(4)
    update = GraphUpdate(dim=8, hidden_dim=16, num_iters=2)
    for p in update.parameters():
        torch.nn.init.normal_(p, std=0.3)
    h_ref, h_pix, src, dst = _random_graph(seed=6)
    with torch.no_grad():
        before = update(h_ref, h_pix, src, dst)
        other = GraphUpdate(dim=8, hidden_dim=16, num_iters=2)
        for p in other.parameters():
            torch.nn.init.normal_(p, std=0.3)
        update.load_state_dict(other.state_dict())  # in-place copies into the same storages
        after = update(h_ref, h_pix, src, dst)
        expected = other(h_ref, h_pix, src, dst)
    for a, e in zip(after, expected):
        torch.testing.assert_close(a, e)
    assert not torch.allclose(before[1], after[1])


def test_message_senders_keep_one_reference_per_object_whatever_the_order():
    """``GRAPH.TEST_SENDER_NMS``: of overlapping references (any class) only the best-scoring one sends."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60], [0, 0, 9, 10], [51, 50, 60, 60]])
    scores = torch.tensor([0.3, 0.9, 0.5, 0.2, 0.1])
    assert message_senders(boxes, scores, 0.5).tolist() == [False, True, True, False, False]
    perm = torch.tensor([4, 2, 0, 3, 1])
    assert message_senders(boxes[perm], scores[perm], 0.5).tolist() == [False, True, False, False, True]
    assert message_senders(boxes, scores, 0.95).tolist() == [True, True, True, True, True]


@pytest.mark.parametrize("aggregation", ["sum", "mean"])
def test_online_senders_update_features_as_the_graph_of_the_senders_alone(aggregation):
    """F̂_t with ``senders`` equals F̂_t of the graph built on the senders only; the non-senders keep their
    edges (valid, with features) for association."""
    torch.manual_seed(3)
    graph = SpatialTemporalGraph(8, [8, 16], [5, 3], 16, 2, aggregation)
    with torch.no_grad():
        for p in graph.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    feats = [torch.randn(1, 8, 6, 9), torch.randn(1, 8, 3, 5)]
    nodes = [torch.randn(4, 8), torch.randn(4, 8)]
    centers = torch.tensor([[20.0, 20.0], [22.0, 21.0], [60.0, 30.0], [24.0, 18.0]])
    senders = torch.tensor([True, False, True, False])
    fused, edges = graph.forward_online(nodes, centers, feats, senders)
    alone, _ = graph.forward_online([n[senders] for n in nodes], centers[senders], feats)
    everyone, all_edges = graph.forward_online(nodes, centers, feats)
    for a, b, c in zip(fused, alone, everyone):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(a, c)
    for e, o in zip(edges, all_edges):
        assert torch.equal(e.valid, o.valid) and torch.equal(e.src, o.src)
        assert e.features.shape == o.features.shape
