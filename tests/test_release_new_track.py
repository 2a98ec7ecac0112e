"""New-track initialisation of the authors' RGNN-VIS release (rgnnvis/models/rgnn.py: a new track's embedding is
the matcher's final detection vertex passed through the track LSTM from a zero state; paper §3.1 "we initialize a
new track with the embedding of that detection"), and the detection update's own gate for its new-track edge (the
release's DetFanatic)."""

import pytest
import torch

from tests.rgnn_fixtures import _synthetic_detections, _tracker
from tests.rgnn_references import scatter_gnn
from vis_rgnn.graph import TrackDetectionGNN
from vis_rgnn.losses import tracker_clip_losses

torch.set_num_threads(1)
NUM_CLASSES, DIM = 3, 16
K = NUM_CLASSES + 1


def _gnn(num_blocks=2):
    torch.manual_seed(0)
    return TrackDetectionGNN(NUM_CLASSES, DIM, 8, 8, num_blocks, True).eval()


def _inputs(b=2, n=5, m=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    track_mask = torch.ones(b, n, dtype=torch.bool)
    track_mask[1, 3:] = False
    det_mask = torch.ones(b, m, dtype=torch.bool)
    det_mask[0, 2:] = False
    return (
        torch.randn(b, n, DIM, generator=g),
        torch.randn(b, m, K + 4, generator=g),
        torch.randn(b, n, m, K + 6, generator=g),
        torch.randn(b, m, K + 5, generator=g),
        track_mask,
        det_mask,
        torch.randn(b, DIM, generator=g),
    )


@pytest.mark.parametrize("num_blocks", [1, 2])
def test_detection_vertices_dense_equals_scatter(num_blocks):
    gnn = _gnn(num_blocks)
    x = _inputs()
    with torch.no_grad():
        d, s = gnn(*x)["dets"], scatter_gnn(gnn, *x)["dets"]
    det_mask = x[-2]
    assert d.shape == (2, 4, DIM)
    torch.testing.assert_close(d[det_mask], s[det_mask])


def test_new_track_starts_from_the_detection_vertex():
    tracker = _tracker(init_threshold=-50.0).eval()
    frames, _, _ = _synthetic_detections(b=2, length=1, seed=0)
    outputs = {}
    tracker.gnn.register_forward_hook(lambda _m, _i, out: outputs.update(out))
    state = tracker.init_state(2, torch.device("cpu"))
    with torch.no_grad():
        tracker.step(state, frames[0])
        zeros = torch.zeros(2, 4, DIM)
        want_dets, _ = tracker.gate(outputs["dets"], zeros, zeros)
        want_edges, _ = tracker.gate(outputs["empty_edges"], zeros, zeros)
    # every detection starts a track (threshold -50): slot s holds the track started by detection s (detection order)
    assert bool(state.alive[:, :4].all())
    for b in range(2):
        for s in range(4):
            h = state.h[b, s]
            match = [(h - want_dets[b, j]).abs().max() < 1e-5 for j in range(4)]
            assert match == [j == s for j in range(4)]
            assert not any((h - want_edges[b, j]).abs().max() < 1e-5 for j in range(4))


def test_detection_update_with_its_own_new_track_edge_gate():
    """A detection gates its new-track edge with its own gate (the release's DetFanatic: bkgdet_sigmoid next to
    trkdet_sigmoid) in every block; in the last block only the detections read it."""
    gnn = _gnn()
    assert all(hasattr(block.det_node, "empty_gate") for block in gnn.blocks)
    assert not any(hasattr(block.track_node, "empty_gate") for block in gnn.blocks)
    x = _inputs()
    with torch.no_grad():
        reference = gnn(*x)
        gnn.blocks[1].det_node.empty_gate[2].bias.add_(3.0)
        changed = gnn(*x)
    det_mask = x[-2]
    assert not torch.allclose(changed["dets"][det_mask], reference["dets"][det_mask])
    for key in ("tracks", "edges", "empty_edges", "empty"):
        torch.testing.assert_close(changed[key], reference[key])


def test_release_tracker_trains_every_parameter():
    """Stage-2 losses reach every tracker parameter (DistributedDataParallel needs no unused parameter), the
    detection updates and the empty track's memory included."""
    torch.manual_seed(0)
    tracker = _tracker(train_init_threshold=-50.0).train()
    frames, identities, targets = _synthetic_detections(b=2, length=3, seed=1)
    weights = {"loss_class": 1.0, "loss_mask": 1.0, "loss_match": 4.0, "loss_new_track": 1.0}
    losses = tracker_clip_losses(tracker, frames, identities, targets, frame_decay=0.8, loss_weights=weights)
    sum(losses.values()).backward()
    missing = [n for n, p in tracker.named_parameters() if p.grad is None]
    assert not missing, missing
    assert tracker.gnn.blocks[1].det_node.update.weight.grad.abs().sum() > 0
    assert tracker.empty_gate.input.weight.grad.abs().sum() > 0
