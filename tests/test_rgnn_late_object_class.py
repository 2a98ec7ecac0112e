"""``MODEL.RGNN.LOSS.LATE_OBJECT_CLASS``: the release's label zeroing (``ScaleCropAugment``'s last line). An object
not visible in its clip's first frame has the background as its tracks' class target; an object seen in the first
frame keeps its class, also after it leaves. Which configs set it: tests/test_release_mask_loss.py."""

from types import SimpleNamespace

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances

from tests.rgnn_fixtures import PAPER_STAGE2, small_cfg
from vis_rgnn.clip_targets import clip_training_frames
from vis_rgnn.losses import tracker_frame_losses

K = 3  # classes; the background is index K


def _frame_gt(ids, classes, h=32, w=48):
    masks = torch.zeros(len(ids), h, w, dtype=torch.bool)
    for i in range(len(ids)):
        masks[i, 4 + 8 * i : 10 + 8 * i, 4:12] = True
    inst = Instances((h, w))
    inst.gt_masks = BitMasks(masks)
    inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
    inst.gt_classes = torch.tensor(classes, dtype=torch.long)
    inst.gt_ids = torch.tensor(ids, dtype=torch.long)
    return inst


def _detections(h=32, w=48):
    det = Instances((h, w))
    det.pred_boxes = Boxes(torch.tensor([[4.0, 4.0, 12.0, 10.0]]))
    det.class_probs = torch.full((1, K + 1), 1.0 / (K + 1))
    det.scores = torch.tensor([0.9])
    det.pred_masks = torch.zeros(1, h // 4, w // 4)
    return det


def _class_targets(late_object_class):
    # One clip of three frames: id 4 (class 0) in frames 0-1 only, id 9 (class 2) from frame 1, id 7 (class 1)
    # in frame 2 only.
    gts = [[_frame_gt([4], [0]), _frame_gt([4, 9], [0, 2]), _frame_gt([9, 7], [2, 1])]]
    dets = [_detections() for _ in range(3)]
    appearance = [torch.zeros(1, 4) for _ in range(3)]
    _, _, targets = clip_training_frames(
        dets, appearance, [(32, 48)] * 3, gts, 0.5, 4, late_object_class=late_object_class
    )
    return [targets[t][0].classes for t in range(3)]


def test_objects_absent_from_the_first_frame_get_the_background():
    for classes in _class_targets(K):
        assert classes == {4: 0, 9: K, 7: K}


def test_without_it_every_object_keeps_its_class():
    for classes in _class_targets(None):
        assert classes == {4: 0, 9: 2, 7: 1}


def test_the_class_loss_of_a_late_object_trains_towards_the_background():
    """tracker_frame_losses' class cross-entropy of a track holding a late object is that of the background."""
    logits = torch.tensor([[[2.0, 0.0, 1.0, -1.0]]])  # (B=1, N=1, K+1)
    identity = torch.tensor([[9]])
    out = SimpleNamespace(
        prev_identity=torch.full((1, 1), -1),
        prev_alive=torch.zeros(1, 1, dtype=torch.bool),
        match_logits=torch.zeros(1, 1, 1),
        edge_mask=torch.zeros(1, 1, 1, dtype=torch.bool),
        new_logits=torch.zeros(1, 1),
        det_valid=torch.zeros(1, 1, dtype=torch.bool),
        class_logits=logits,
        alive=torch.ones(1, 1, dtype=torch.bool),
    )
    for late, target in ((K, K), (None, 2)):
        targets = [SimpleNamespace(classes=_class_targets(late)[1])]
        loss = tracker_frame_losses(out, identity, torch.full((1, 1), -1), targets, K, 1.0, "release")["loss_class"]
        assert torch.allclose(loss, -torch.log_softmax(logits[0, 0], 0)[target])


def test_the_model_passes_the_background_index_and_rejects_unknown_values():
    cfg = small_cfg(PAPER_STAGE2, STAGE=2)
    model = build_model(cfg)
    assert model.late_objects_background and model.tracker.num_classes == K
    cfg.MODEL.RGNN.LOSS.LATE_OBJECT_CLASS = "zero"
    with pytest.raises(ValueError, match="LATE_OBJECT_CLASS"):
        build_model(cfg)
