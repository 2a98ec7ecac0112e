"""VisSTG tracking (§3.5) and occlusion memory (§3.6) on hand-made inputs."""

import torch
from detectron2.structures import Boxes, Instances

from vis_stg.edge_classifier import EdgeClassifier
from vis_stg.graph import GraphEdges
from vis_stg.online_step import assign_track_ids, match, next_references
from vis_stg.state import ReferenceSet
from vis_stg.sync_free import EXACT, greedy_match_fixed_point
from vis_stg.targets import assign_centers

torch.set_num_threads(1)


def greedy_match(scores, valid):
    return greedy_match_fixed_point(scores, valid, EXACT)[0]


def _next_refs(current, refs, det_to_ref, frame_idx, ref_score_thresh=0.0, memory_frames=7):
    """:func:`next_references` cut to the kept instances."""
    padded, count, _ = next_references(current, refs, det_to_ref, frame_idx, None, ref_score_thresh, memory_frames)
    return padded[slice(0, int(count))]


def _refs(track_ids, classes, last_seen, dim=4):
    n = len(track_ids)
    return ReferenceSet(
        track_ids=torch.tensor(track_ids),
        classes=torch.tensor(classes),
        scores=torch.ones(n),
        boxes=torch.tensor([[0.0, 0.0, 10.0, 10.0]] * n),
        nodes=[torch.randn(n, dim), torch.randn(n, dim)],
        kernels=torch.randn(n, 169),
        kernel_levels=torch.zeros(n, dtype=torch.long),
        last_seen=torch.tensor(last_seen),
    )


def test_greedy_match_keeps_one_edge_per_instance_and_per_detection():
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.95, 0.6, 0.7]])
    valid = scores > 0.5
    # ref 1 takes det 0 (0.95); ref 0's best remaining edge is det 1 (0.8); det 2 has only a sub-threshold edge.
    assert greedy_match(scores, valid).tolist() == [1, 0, -1]
    assert greedy_match(scores, torch.zeros_like(valid)).tolist() == [-1, -1, -1]


def test_class_mismatch_edges_are_pruned():
    scores = torch.tensor([[0.99, 0.6]])
    valid = torch.ones(1, 2, dtype=torch.bool)
    # The best edge goes to a detection of another class: it is removed, the same-class one is kept.
    assert match(scores, valid, torch.tensor([3]), torch.tensor([1, 3]), True)[0].tolist() == [-1, 0]
    assert match(scores, valid, torch.tensor([3]), torch.tensor([1, 3]), False)[0].tolist() == [0, -1]


def test_new_tracks_get_fresh_ids_and_matches_inherit():
    refs = _refs([2, 4], [0, 0], [0, 0])
    ids, next_id = assign_track_ids(5, refs, torch.tensor([1, -1, 0, -1]))
    assert ids.tolist() == [4, 5, 2, 6] and next_id == 7
    first, _ = assign_track_ids(0, None, torch.tensor([-1, -1]))
    assert first.tolist() == [0, 1]
    padded, _ = assign_track_ids(torch.tensor(3), None, torch.tensor([-1, -1, -1]), torch.tensor([True, False, True]))
    assert padded.tolist() == [3, -1, 4]


def test_occlusion_memory_expires_after_delta_t():
    refs = _refs([0], [1], [0])  # seen last in frame 0, never matched again
    alive_at = []
    for t in range(1, 12):  # step t: nothing detected
        empty = _refs([], [], [])
        refs = _next_refs(empty, refs, torch.zeros(0, dtype=torch.long), t - 1)
        if len(refs):
            alive_at.append(t)
    # The instance is a reference node at frames 1..7 (t - last_seen <= Δt) and gone from frame 8 on.
    assert alive_at == list(range(1, 8))


def test_next_references_drops_matched_and_keeps_unmatched_with_features():
    refs = _refs([0, 1, 2], [0, 1, 2], [4, 4, 1])
    current = _refs([0, 9], [0, 2], [5, 5])
    nxt = _next_refs(current, refs, torch.tensor([0, -1]), frame_idx=5)
    # Track 0 continues as a detection; 1 goes to the memory; 2 (last seen 1) is kept while 6 - 1 <= 7.
    assert nxt.track_ids.tolist() == [0, 9, 1, 2]
    assert nxt.last_seen.tolist() == [5, 5, 4, 1]
    torch.testing.assert_close(nxt.nodes[1][2], refs.nodes[1][1])
    torch.testing.assert_close(nxt.kernels[3], refs.kernels[2])
    assert len(_next_refs(current, None, torch.tensor([-1, -1]), 5)) == 2


def test_low_score_detections_become_references_only_when_they_continue_a_track():
    current = _refs([5, 0, 6], [0, 0, 0], [3, 3, 3])  # detection 1 continues track 0
    current.scores = torch.tensor([0.9, 0.1, 0.1])
    nxt = _next_refs(current, _refs([0], [0], [2]), torch.tensor([-1, 0, -1]), frame_idx=3, ref_score_thresh=0.3)
    # Kept: the confident new detection and the weak one that continues track 0; the weak new one is dropped.
    assert nxt.track_ids.tolist() == [5, 0]


def _inst(boxes, classes, ids):
    inst = Instances((64, 64))
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.gt_classes, inst.gt_ids = torch.tensor(classes), torch.tensor(ids)
    return inst


def test_edge_loss_uses_the_pruned_edge_set_and_track_id_labels():
    # Target frame: object id 5 (class 0) centred in cell (2, 2), id 6 (class 1) in cell (5, 5) of an 8x8 P3.
    targets = assign_centers(
        [_inst([[16.0, 16.0, 24.0, 24.0], [40.0, 40.0, 48.0, 48.0]], [0, 1], [5, 6])], [(8, 8)], [8], [], num_classes=2
    )
    # Reference instances: id 5 (class 0), id 7 (class 0), id 8 (class 1).
    ref_ids, ref_classes = torch.tensor([5, 7, 8]), torch.tensor([0, 0, 1])
    src = torch.tensor([0, 0, 1, 1, 2, 2])
    dst = torch.tensor([2 * 8 + 2, 0, 2 * 8 + 2, 5 * 8 + 5, 2 * 8 + 2, 5 * 8 + 5])
    feats = torch.arange(6.0)[:, None]
    clf = EdgeClassifier(1, hidden_dim=4)
    seen = {}

    def record(x):
        seen["x"] = x.detach().clone()
        return torch.zeros(len(x))

    clf.forward = record
    loss = clf.losses(
        [GraphEdges(src, dst, feats)],
        ref_ids,
        ref_classes,
        torch.zeros(3, dtype=torch.long),
        targets,
        [(8, 8)],
        [8],
        None,
        2,
        edge_set="gt",
    )
    # Kept: (0 -> id5 centre) positive, (1 -> id5 centre) negative, (2 -> id6 centre) negative;
    # removed: edge to a background cell (1), class mismatches (3: class 0 -> class 1, 4: class 1 -> class 0).
    assert seen["x"].flatten().tolist() == [0.0, 2.0, 5.0]
    torch.testing.assert_close(loss, torch.log(torch.tensor(2.0)))  # BCE of logit 0 against any label


def test_edge_classifier_shapes_and_gradients():
    clf = EdgeClassifier(8, hidden_dim=4)
    feats = torch.randn(5, 8, requires_grad=True)
    out = clf(feats)
    assert out.shape == (5,)
    out.sum().backward()
    assert feats.grad is not None and all(p.grad is not None for p in clf.parameters())
    targets = assign_centers([_inst(torch.zeros(0, 4).tolist(), [], [])], [(8, 8)], [8], [], num_classes=2)
    empty = GraphEdges(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0, 8))
    none = torch.zeros(0, dtype=torch.long)
    loss = clf.losses([empty], none, none, none, targets, [(8, 8)], [8], [torch.zeros(1, 2, 8, 8)], 2)
    assert loss.item() == 0.0 and loss.requires_grad
