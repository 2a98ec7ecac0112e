"""Slot allocation of the authors' RGNN-VIS release (rgnnvis/models/rgnn.py): new tracks take the lowest free slots
in detection order, and no slot is ever evicted or re-used (MODEL.RGNN.SLOT_EVICTION False, NEW_TRACK_ORDER
"detection"); ours (the defaults) orders by new-track logit and evicts the least confident inactive track."""

import pytest
import torch
from detectron2.config import get_cfg

from vis_rgnn.config import add_rgnn_config
from vis_rgnn.convert_release import RELEASE_CONFIG
from vis_rgnn.slots import allocate_slots
from vis_rgnn.tracker import RGNNTracker

torch.set_num_threads(1)


def _case():
    """4 slots: 1 and 3 free, 0 active, 2 alive but inactive (confidence 0.1). Detections 0, 2, 3 start tracks;
    by new-track logit the order is 3, 2, 0."""
    alive = torch.tensor([[True, False, True, False]])
    active = torch.tensor([[True, False, False, False]])
    confidence = torch.tensor([[0.9, 0.0, 0.1, 0.0]])
    new = torch.tensor([[True, False, True, True]])
    logits = torch.tensor([[-1.0, 5.0, 0.0, 1.0]])
    return alive, confidence, new, logits, active


def test_release_allocation_detection_order_without_eviction():
    slot_det, slot_rank = allocate_slots(*_case(), evict=False, order="detection")
    # lowest free slots in detection order; the third new track finds no free slot and is dropped
    assert slot_det.tolist() == [[-1, 0, -1, 2]]
    assert slot_rank.tolist() == [[-1, 0, -1, 1]]


def test_default_allocation_logit_order_with_eviction():
    slot_det, slot_rank = allocate_slots(*_case())
    # free slots 1, 3 to the best logits (dets 3, 2), then the inactive slot 2 is evicted for det 0
    assert slot_det.tolist() == [[-1, 3, 0, 2]]
    assert slot_rank.tolist() == [[-1, 0, 2, 1]]


def test_full_slots_release_never_starts():
    alive = torch.ones(1, 3, dtype=torch.bool)
    active = torch.tensor([[False, False, True]])
    confidence = torch.tensor([[0.5, 0.2, 0.9]])
    new, logits = torch.tensor([[True]]), torch.tensor([[3.0]])
    slot_det, _ = allocate_slots(alive, confidence, new, logits, active, evict=False, order="detection")
    assert slot_det.tolist() == [[-1, -1, -1]]
    slot_det, _ = allocate_slots(alive, confidence, new, logits, active)
    assert slot_det.tolist() == [[-1, 0, -1]]  # ours evicts the least confident inactive track


def test_switches_from_config():
    cfg = get_cfg()
    add_rgnn_config(cfg)
    cfg.merge_from_file(RELEASE_CONFIG)
    tracker = RGNNTracker(cfg, appearance_dim=512, mask_stride=4)
    assert tracker.slot_eviction is False and tracker.new_track_order == "detection"
    with pytest.raises(ValueError, match="NEW_TRACK_ORDER"):
        allocate_slots(*_case(), order="score")
