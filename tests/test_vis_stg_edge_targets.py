"""Training edge set of VisSTG's edge classifier (eq. (6)): predicted detections, pruning, labels."""

import pytest
import torch
from detectron2.structures import Boxes, Instances

from vis_stg.edge_targets import edge_set_and_labels, predicted_cells
from vis_stg.graph import GraphEdges
from vis_stg.targets import assign_centers


def _targets(boxes, classes, ids):
    inst = Instances((64, 64))
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.gt_classes, inst.gt_ids = torch.tensor(classes), torch.tensor(ids)
    return assign_centers([inst], [(8, 8)], [8], [], num_classes=2)


def _heat(peaks):
    """(1, 2, 8, 8) logits: -10 everywhere, +4 at the given (class, x, y) peaks."""
    heat = torch.full((1, 2, 8, 8), -10.0)
    for c, x, y in peaks:
        heat[0, c, y, x] = 4.0
    return heat


def _cell(x, y):
    return y * 8 + x


# Frame t: object id 5 (class 0) centred in cell (2, 2), id 6 (class 0) in cell (5, 5).
TARGETS = _targets([[16.0, 16.0, 24.0, 24.0], [40.0, 40.0, 48.0, 48.0]], [0, 0], [5, 6])
# References: id 5 (class 0), id 9 (class 1: no object in frame t).
REF_IDS, REF_CLASSES, REF_BATCH = torch.tensor([5, 9]), torch.tensor([0, 1]), torch.zeros(2, dtype=torch.long)


def _run(dst, src, heat, edge_set, **kw):
    edges = GraphEdges(torch.tensor(src), torch.tensor(dst), torch.zeros(len(dst), 1))
    return edge_set_and_labels(edges, 0, (8, 8), 8, REF_IDS, REF_CLASSES, REF_BATCH, TARGETS, heat, 2, edge_set, **kw)


def test_predicted_cells_are_thresholded_peaks_with_their_class():
    heat = _heat([(0, 2, 2), (1, 6, 1)])
    heat[0, 0, 2, 3] = 3.0  # a neighbour of the (2, 2) peak: suppressed by the 3x3 max-pool
    detected, cls = predicted_cells(heat, 0.5)
    assert detected.nonzero().flatten().tolist() == [_cell(6, 1), _cell(2, 2)]
    assert cls[_cell(2, 2)] == 0 and cls[_cell(6, 1)] == 1


def test_predicted_edge_set_has_false_positives_and_other_objects_as_negatives():
    # Predictions: id 5's object detected one cell off its centre (3, 2), id 6's object at its centre, a false
    # positive of class 0 at (0, 7) and one of class 1 at (7, 0); GT centre (2, 2) itself is not detected.
    heat = _heat([(0, 3, 2), (0, 5, 5), (0, 0, 7), (1, 7, 0)])
    dst = [_cell(3, 2), _cell(5, 5), _cell(0, 7), _cell(2, 2), _cell(7, 0), _cell(7, 0), _cell(3, 2)]
    src = [0, 0, 0, 0, 0, 1, 1]
    keep, labels = _run(dst, src, heat, "predicted")
    # ref 0: near its own centre (positive), another object of its class (negative), a false positive
    # (negative); its undetected GT centre and the class-1 false positive are pruned. ref 1 (class 1): only the
    # class-1 false positive survives class pruning, as a negative.
    assert keep.tolist() == [True, True, True, False, False, True, False]
    assert labels[keep].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_gt_edge_set_is_the_gt_centres_pruned_by_gt_class():
    dst = [_cell(2, 2), _cell(5, 5), _cell(3, 2), _cell(2, 2)]
    keep, labels = _run(dst, [0, 0, 0, 1], None, "gt")
    assert keep.tolist() == [True, True, False, False]
    assert labels[keep].tolist() == [1.0, 0.0]


def test_union_and_radius():
    heat = _heat([(0, 4, 2)])  # two cells off id 5's centre
    dst = [_cell(2, 2), _cell(4, 2)]
    keep, labels = _run(dst, [0, 0], heat, "gt+predicted", match_radius=1)
    assert keep.tolist() == [True, True] and labels.tolist() == [1.0, 0.0]
    _, labels = _run(dst, [0, 0], heat, "gt+predicted", match_radius=2)
    assert labels.tolist() == [1.0, 1.0]


def test_two_objects_in_one_cell_keep_both_supervisions():
    targets = _targets([[16.0, 16.0, 24.0, 24.0], [17.0, 17.0, 23.0, 23.0]], [0, 0], [5, 6])
    assert targets.cells.tolist() == [[2, 2], [2, 2]]
    edges = GraphEdges(torch.tensor([0, 1]), torch.tensor([_cell(2, 2)] * 2), torch.zeros(2, 1))
    ref_ids, ref_classes = torch.tensor([5, 6]), torch.tensor([0, 0])
    keep, labels = edge_set_and_labels(
        edges, 0, (8, 8), 8, ref_ids, ref_classes, torch.zeros(2, dtype=torch.long), targets, None, 2, "gt"
    )
    assert keep.tolist() == [True, True] and labels.tolist() == [1.0, 1.0]


def test_unknown_edge_set_is_refused():
    with pytest.raises(ValueError, match="TRAIN_EDGE_SET"):
        _run([0], [0], None, "all")


def test_an_object_that_changed_level_is_a_positive_on_every_level():
    """Eq. (6) labels by identity: frame k saw id 5 small (P3), in frame t it is 40 px (FCOS measure 20 > 16:
    P4). A confident peak of its class at its centre on P3 is the same instance (label 1), as on P4; a peak at
    another object's centre, or of the object elsewhere, stays a negative."""
    inst = Instances((64, 64))
    # id 5: 40x40 box centred at (20, 20) -> P4 (stride 16) cell (1, 1), projected on P3 (stride 8): (2, 2).
    # id 6: 8x8 box centred at (52, 52) -> P3 cell (6, 6).
    inst.gt_boxes = Boxes(torch.tensor([[0.0, 0.0, 40.0, 40.0], [48.0, 48.0, 56.0, 56.0]]))
    inst.gt_classes, inst.gt_ids = torch.tensor([0, 0]), torch.tensor([5, 6])
    targets = assign_centers([inst], [(8, 8), (4, 4)], [8, 16], [16], num_classes=2)
    assert targets.level.tolist() == [1, 0] and targets.cells.tolist() == [[1, 1], [6, 6]]
    ref_ids, ref_classes, ref_batch = torch.tensor([5]), torch.tensor([0]), torch.zeros(1, dtype=torch.long)

    def run(lvl, shape, stride, heat, dst, **kw):
        edges = GraphEdges(torch.zeros(len(dst), dtype=torch.long), torch.tensor(dst), torch.zeros(len(dst), 1))
        return edge_set_and_labels(
            edges, lvl, shape, stride, ref_ids, ref_classes, ref_batch, targets, heat, 2, "predicted", **kw
        )

    # P3: peaks at id 5's projected centre (2, 2), next to it (3, 2), at id 6's centre (6, 6), far away (0, 7).
    heat3 = _heat([(0, 2, 2), (0, 4, 2), (0, 6, 6), (0, 0, 7)])
    keep, labels = run(0, (8, 8), 8, heat3, [_cell(2, 2), _cell(4, 2), _cell(6, 6), _cell(0, 7)], match_radius=2)
    assert keep.tolist() == [True, True, True, True]
    assert labels.tolist() == [1.0, 1.0, 0.0, 0.0]
    _, labels = run(0, (8, 8), 8, heat3, [_cell(2, 2), _cell(4, 2)], match_radius=1)
    assert labels.tolist() == [1.0, 0.0]
    # P4 (its own level): the GT centre cell (1, 1) is a positive as before, (3, 3) is not.
    heat4 = torch.full((1, 2, 4, 4), -10.0)
    heat4[0, 0, 1, 1] = heat4[0, 0, 3, 3] = 4.0
    keep, labels = run(1, (4, 4), 16, heat4, [1 * 4 + 1, 3 * 4 + 3])
    assert keep.tolist() == [True, True] and labels.tolist() == [1.0, 0.0]
