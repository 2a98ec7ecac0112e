"""The GNN of the authors' RGNN-VIS release (rgnnvis/models/rgnn.py ``TrackDetectionMatcher`` + ``GraphNet`` x 4,
``TrackDescriptor.update_memory``; docs/rgnn_release_port.md tracker items 1, 2, 5): its raw inputs, the blocks
updating every vertex with a detection's own new-track edge gate, and the converter's mapping of its weights
(column orders, LSTM gate order and biases). Oracles are written out here from the release's formulas."""

import math

import torch
import torch.nn.functional as F

from vis_rgnn.convert_release import release_tracker_key
from vis_rgnn.graph import ResidualReLU, TrackDetectionGNN
from vis_rgnn.graph_inputs import graph_inputs
from vis_rgnn.recurrent import LSTMGate
from vis_rgnn.track_state import FrameDetections, TrackState

torch.set_num_threads(1)


def _frame(boxes, logits, appearance, valid, size=(480.0, 864.0)):
    b, m = valid.shape
    return FrameDetections(
        boxes=boxes,
        class_probs=logits.softmax(-1),
        scores=torch.zeros(b, m),
        masks=torch.zeros(b, m, 2, 2),
        appearance=appearance,
        valid=valid,
        image_sizes=torch.tensor([size] * b),
        class_logits=logits,
    )


def test_release_inputs_hand_computed():
    """One track, two detection slots (the second padded), A = 2 appearance channels, K+1 = 3 classes."""
    state = TrackState.empty(1, 1, 4, 2, 2, -7.0, "cpu")
    state.boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0]]])
    state.app_mean = torch.tensor([[[0.0, 1.0]]])
    state.app_var = torch.tensor([[[1.0, 4.0]]])
    boxes = torch.tensor([[[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 0.0, 0.0]]])
    logits = torch.tensor([[[2.0, -1.0, 0.5], [7.0, 7.0, 7.0]]])
    x = torch.tensor([[[1.0, 3.0], [0.0, 0.0]]])
    fd = _frame(boxes, logits, x, torch.tensor([[True, False]]))
    empty = (torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 0.5]]))
    edges, empty_edges, dets, iou = graph_inputs(state, fd, 1, empty)
    # detection vertex: raw logits (padding -100), box * (2 / 864, 2 / 480) - 1
    box0 = [2 * 5 / 864 - 1, -1.0, 2 * 15 / 864 - 1, 2 * 10 / 480 - 1]
    torch.testing.assert_close(dets[0, 0], torch.tensor([2.0, -1.0, 0.5] + box0))
    torch.testing.assert_close(dets[0, 1, :3], torch.full((3,), -100.0))
    # ll = -1/2 (A 1.8379 + sum log var + sum (x - mu)^2 / var); IoU of [0,10]x[0,10] and [5,15]x[0,10] = 50 / 150
    ll = -0.5 * (2 * 1.8379 + math.log(1.0) + math.log(4.0) + 1.0 + 4.0 / 4.0)
    torch.testing.assert_close(edges[0, 0, 0, 7:], torch.tensor([-4.0 + 0.01 * ll, 2 * (50 / 150) - 1]))
    torch.testing.assert_close(edges[0, 0, 0, :7], dets[0, 0])
    empty_ll = -0.5 * (2 * 1.8379 + math.log(2.0) + math.log(0.5) + 0.0 / 2.0 + 4.0 / 0.5)
    torch.testing.assert_close(empty_edges[0, 0, 7], torch.tensor(-4.0 + 0.01 * empty_ll))
    assert edges.shape == (1, 1, 2, 9) and empty_edges.shape == (1, 2, 8) and iou.shape == (1, 1, 2)


def test_residual_relu_is_the_releases_residual():
    torch.manual_seed(0)
    r = ResidualReLU(4, 3)
    x = torch.randn(5, 4)
    with torch.no_grad():
        hidden = F.relu(x @ r.fc1.weight.T + r.fc1.bias)
        want = F.relu(x + hidden @ r.fc2.weight.T + r.fc2.bias)
        torch.testing.assert_close(r(x), want)


def _gated(gate, edge):
    """sigmoid(Linear(ReLU(Linear(edge)))) * edge (the release's *_sigmoid layers, then torch.sigmoid)."""
    return torch.sigmoid(gate[2](F.relu(gate[0](edge)))) * edge


def _release_block(blk, first, t, d, e, n, t0, tmask, dmask):
    """The release's GraphNet (one iteration) written per element: bkgdet, trkdet edges, then the empty-track,
    track and detection vertices from the new edges (BkgDetBase / TrkDetBase / *Fanatic, residual None)."""
    b_size, nt, nd = tmask.shape[0], tmask.shape[1], dmask.shape[1]
    if first:
        e_new, n_new = blk.edge(e), blk.empty_edge(n)
    else:
        e_new = blk.edge(torch.cat([e, t[:, :, None].expand(-1, -1, nd, -1), d[:, None].expand(-1, nt, -1, -1)], -1))
        n_new = blk.empty_edge(torch.cat([n, t0[:, None].expand(-1, nd, -1), d], -1))
    dim = e_new.shape[-1]
    t_out, d_out, t0_out = [], [], []
    for b in range(b_size):
        acc0 = torch.zeros(dim)
        for j in range(nd):
            if dmask[b, j]:
                acc0 = acc0 + _gated(blk.empty_node.gate, n_new[b, j])
        t0_out.append(F.relu(blk.empty_node.update(torch.cat([t0[b], acc0]))))
        rows = []
        for i in range(nt):
            acc = torch.zeros(dim)
            for j in range(nd):
                if tmask[b, i] and dmask[b, j]:
                    acc = acc + _gated(blk.track_node.gate, e_new[b, i, j])
            rows.append(F.relu(blk.track_node.update(torch.cat([t[b, i], acc]))))
        t_out.append(torch.stack(rows))
        rows = []
        for j in range(nd):
            acc = _gated(blk.det_node.empty_gate, n_new[b, j])
            for i in range(nt):
                if tmask[b, i] and dmask[b, j]:
                    acc = acc + _gated(blk.det_node.gate, e_new[b, i, j])
            rows.append(F.relu(blk.det_node.update(torch.cat([d[b, j], acc]))))
        d_out.append(torch.stack(rows))
    return torch.stack(t_out), torch.stack(d_out), e_new, n_new, torch.stack(t0_out)


def test_release_blocks_update_every_vertex_like_the_release():
    """Four release GraphNets (block, residual, block, residual) vs a per-element oracle; every block and
    residual updates the empty track and the detections too; padded detections / tracks change nothing."""
    torch.manual_seed(0)
    k, dim = 3, 8
    gnn = TrackDetectionGNN(k - 1, dim, 4, 4, 2, True).eval()
    assert all(hasattr(blk, "empty_node") and hasattr(blk, "det_node") for blk in gnn.blocks)
    assert all(set(r) == {"tracks", "dets", "edges", "empty_edges", "empty"} for r in gnn.residuals)
    assert all(isinstance(r, ResidualReLU) for res in gnn.residuals for r in res.values())
    b, nt, nd = 2, 3, 4
    g = torch.Generator().manual_seed(1)
    tracks = torch.randn(b, nt, dim, generator=g)
    dets = torch.randn(b, nd, k + 4, generator=g)
    edges = torch.randn(b, nt, nd, k + 6, generator=g)
    empty_edges = torch.randn(b, nd, k + 5, generator=g)
    empty = torch.randn(b, dim, generator=g)
    tmask = torch.tensor([[True, True, False], [True, True, True]])
    dmask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    with torch.no_grad():
        out = gnn(tracks, dets, edges, empty_edges, tmask, dmask, empty=empty)
        t, d, t0 = tracks, dets, empty
        e = torch.cat([edges, t[:, :, None].expand(-1, -1, nd, -1)], -1)
        n = torch.cat([empty_edges, t0[:, None].expand(-1, nd, -1)], -1)
        for i, (blk, res) in enumerate(zip(gnn.blocks, gnn.residuals)):
            t, d, e, n, t0 = _release_block(blk, i == 0, t, d, e, n, t0, tmask, dmask)
            t, d, e, n, t0 = res["tracks"](t), res["dets"](d), res["edges"](e), res["empty_edges"](n), res["empty"](t0)
    em = tmask[:, :, None] & dmask[:, None, :]
    torch.testing.assert_close(out["tracks"][tmask], t[tmask])
    torch.testing.assert_close(out["dets"][dmask], d[dmask])
    torch.testing.assert_close(out["edges"][em], e[em])
    torch.testing.assert_close(out["empty_edges"][dmask], n[dmask])
    torch.testing.assert_close(out["empty"], t0)


def test_lstm_mapping_gate_order_and_biases():
    """The release's update_memory: fioc = x_layer(x) + prev_out_layer(h) (both with bias), gates in the order
    forget, input, output, candidate; out = o * tanh(c'). The converter gives the same output in LSTMGate."""
    torch.manual_seed(0)
    dim = 5
    wx, bx = torch.randn(4 * dim, dim), torch.randn(4 * dim)
    wh, bh = torch.randn(4 * dim, dim), torch.randn(4 * dim)
    net = {
        "track_descriptor.memory_layers.tracks.x.weight": wx,
        "track_descriptor.memory_layers.tracks.x.bias": bx,
        "track_descriptor.memory_layers.tracks.prev_out.weight": wh,
        "track_descriptor.memory_layers.tracks.prev_out.bias": bh,
    }
    gate = LSTMGate(dim)
    sd = {}
    for key in net:
        name, make = release_tracker_key(key)
        if name:
            sd[name[len("tracker.gate.") :]] = make(net)
    assert release_tracker_key("track_descriptor.memory_layers.tracks.prev_out.bias")[0] == ""
    gate.load_state_dict(sd)
    x, h, c = torch.randn(3, dim), torch.randn(3, dim), torch.randn(3, dim)
    fioc = x @ wx.T + bx + h @ wh.T + bh
    f, i, o, cand = (fioc[:, j * dim : (j + 1) * dim] for j in range(4))
    c_want = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(cand)
    h_want = torch.sigmoid(o) * torch.tanh(c_want)
    with torch.no_grad():
        h_out, c_out = gate(x, h, c)
    torch.testing.assert_close(c_out, c_want)
    torch.testing.assert_close(h_out, h_want)
    assert release_tracker_key("track_descriptor.memory_layers.background.x.weight")[0] == (
        "tracker.empty_gate.input.weight"
    )


def test_first_block_columns_follow_the_releases_concatenation():
    """layers.0.trkdet.out.0 reads [track vertex (D), detection vertex (K+1 logits background first, box),
    -4 + 0.01 ll, 2 IoU - 1]; ours reads [detection vertex (background last), ll, IoU, track vertex]."""
    dim, k1 = 6, 4
    w = torch.randn(dim, dim + k1 + 4 + 2)
    name, make = release_tracker_key("track_detection_matcher.layers.0.trkdet.out.0.weight")
    assert name == "tracker.gnn.blocks.0.edge.0.weight"
    ours = make({"track_detection_matcher.layers.0.trkdet.out.0.weight": w})
    trk, logits_bg_first, box, feats = torch.randn(dim), torch.randn(k1), torch.randn(4), torch.randn(2)
    release_in = torch.cat([trk, logits_bg_first, box, feats])
    ours_in = torch.cat([logits_bg_first[1:], logits_bg_first[:1], box, feats, trk])
    torch.testing.assert_close(ours @ ours_in, w @ release_in)
    # a later block: release [vertex, detection, edge] -> ours [edge, vertex, detection]
    w3 = torch.randn(dim, 3 * dim)
    name, make = release_tracker_key("track_detection_matcher.layers.2.bkgdet.out.0.weight")
    assert name == "tracker.gnn.blocks.1.empty_edge.0.weight"
    v, det, edge = torch.randn(dim), torch.randn(dim), torch.randn(dim)
    ours3 = make({"track_detection_matcher.layers.2.bkgdet.out.0.weight": w3})
    torch.testing.assert_close(ours3 @ torch.cat([edge, v, det]), w3 @ torch.cat([v, det, edge]))
    # the first block's detection update: [detection vertex, aggregated edges]
    w_det = torch.randn(dim, k1 + 4 + dim)
    _, make = release_tracker_key("track_detection_matcher.layers.0.det.out.0.weight")
    ours_det = make({"track_detection_matcher.layers.0.det.out.0.weight": w_det})
    agg = torch.randn(dim)
    torch.testing.assert_close(
        ours_det @ torch.cat([logits_bg_first[1:], logits_bg_first[:1], box, agg]),
        w_det @ torch.cat([logits_bg_first, box, agg]),
    )
