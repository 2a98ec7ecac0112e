"""Facts of the authors' RGNN-VIS release's track scoring, mask re-weighting inputs, per-frame masks and results
(rgnnvis/models/rgnn.py ``TrackModule.get_segscores``, ``RGNN.forward``; rgnnvis/engines/vis_evaluator.py
``save_predictions_ytvis``), and its 480 x 864 training resize, each against numbers derived here."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.structures import BitMasks, Boxes, Instances

from projects.modeling.online import VideoTrack
from vis_rgnn.config import add_rgnn_config
from vis_rgnn.frame_outputs import check_release_switches, frame_masks, track_confidence
from vis_rgnn.heads import MaskReweighting
from vis_rgnn.image_input import resize_training_instances, training_images
from vis_rgnn.meta_arch import RGNNVIS

torch.set_num_threads(1)


def test_track_confidence_is_the_max_foreground_probability():
    """The release: max_c p(c) over the foreground (its score max_c log p(c) - logsumexp is the log of it), not
    1 - p(background)."""
    logits = torch.tensor([[2.0, 1.0, 0.5, 3.0]])  # 3 foreground classes, background last
    probs = logits.softmax(-1)
    z = sum(math.exp(v) for v in (2.0, 1.0, 0.5, 3.0))
    assert track_confidence(probs, 3).item() == pytest.approx(math.exp(2.0) / z, rel=1e-6)
    release_score = logits[0, :3].max() - logits[0].logsumexp(0)
    assert math.exp(release_score) == pytest.approx(track_confidence(probs, 3).item(), rel=1e-6)


def test_release_mask_reweighting_inputs():
    """TrackModule.get_segscores: seg_layers(cat[raw logit map, 0/1 box map, ReLU(Linear(h)) broadcast]); here
    conv1's channels are [embedding, map, box], so the release's weight maps with [2:18] then [0:2]."""
    torch.manual_seed(0)
    mod = MaskReweighting(8, 4, 5, residual=False, inputs="release", box_weight=10.0)
    w_release = torch.randn(5, 6, 3, 3)  # the release's layout: [raw, box, 4 embedding channels]
    with torch.no_grad():
        mod.conv1.weight.copy_(torch.cat([w_release[:, 2:], w_release[:, :2]], dim=1))
    h, raw = torch.randn(2, 8), torch.randn(2, 6, 10) * 3
    boxes = torch.tensor([[4.0, 2.0, 20.0, 14.0], [0.0, 0.0, 39.0, 23.0]])
    xs, ys = torch.linspace(0, 40, 10), torch.linspace(0, 24, 6)
    box = torch.stack(
        [((xs >= b[0]) & (xs <= b[2]))[None, :] & ((ys >= b[1]) & (ys <= b[3]))[:, None] for b in boxes]
    ).float()
    got = mod.from_detections(h, raw + 10.0 * box, boxes, 4)
    emb = F.relu(mod.embed(h))[:, :, None, None].expand(-1, -1, 6, 10)
    x = torch.cat([raw[:, None], box[:, None], emb], dim=1)
    want = mod.conv2(F.relu(F.conv2d(x, w_release, mod.conv1.bias, padding=1)))[:, 0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="MASK_RESIDUAL"):
        MaskReweighting(8, inputs="release", residual=True)
    # untrained (our initialisation): the detection's score map itself, so the masks are the segmenter's
    fresh = MaskReweighting(8, 4, 5, residual=False, inputs="release")
    torch.testing.assert_close(fresh.from_detections(h, raw + 10.0 * box, boxes, 4), raw + 10.0 * box)


def test_release_frame_masks_background_10_and_direct_resize():
    """RGNN.forward: score maps resized bilinearly straight to the frame, argmax over [10, tracks in slot order];
    a grid that also covers padding (input 45 x 77 on a 12 x 20 grid of stride 4) is cut to the input first."""
    torch.manual_seed(1)
    scores = torch.randn(3, 12, 20) * 4 + 10
    got = frame_masks(scores, 4, (48, 80), (37, 61), background=10.0)
    up = F.interpolate(scores[None], size=(37, 61), mode="bilinear", align_corners=False)[0]
    owner = torch.cat([torch.full((1, 37, 61), 10.0), up]).argmax(dim=0)
    for m in range(3):
        assert torch.equal(got[m], owner == m + 1)
    padded = frame_masks(scores, 4, (45, 77), (37, 61), background=10.0)
    cut = F.interpolate(scores[None], scale_factor=4, mode="bilinear", align_corners=False)[0, :, :45, :77]
    up = F.interpolate(cut[None], size=(37, 61), mode="bilinear", align_corners=False)[0]
    owner = torch.cat([torch.full((1, 37, 61), 10.0), up]).argmax(dim=0)
    for m in range(3):
        assert torch.equal(padded[m], owner == m + 1)
    assert frame_masks(scores[:0], 4, (48, 80), (37, 61), 10.0).shape == (0, 37, 61)


def test_release_results_finalise_max_class_at_last_frame():
    """save_predictions_ytvis: category = argmax of the foreground at the last frame, score = its probability."""
    probs = torch.tensor([[0.1, 0.3, 0.2, 0.4], [0.5, 0.1, 0.1, 0.3]])  # 3 classes + background (last)
    model = SimpleNamespace(scoring="learned", detector=SimpleNamespace(num_classes=3))
    tracks = {0: VideoTrack(track_id=0), 1: VideoTrack(track_id=1)}
    RGNNVIS.finalize_video(model, {"class_probs": probs, "num_ids": 2}, tracks)
    assert [t.score for t in tracks.values()] == pytest.approx([0.3, 0.5])  # not 1 - p(background): 0.6, 0.7
    assert [t.category_id for t in tracks.values()] == [1, 0]


def test_release_switches_are_checked():
    cfg = get_cfg()
    add_rgnn_config(cfg)
    r = cfg.MODEL.RGNN
    check_release_switches(r)  # defaults
    r.MASK_REWEIGHT_INPUT = "release"
    with pytest.raises(ValueError, match="DETECTION_MASK_SCORES"):
        check_release_switches(r)
    r.DETECTION_MASK_SCORES = "release"
    with pytest.raises(ValueError, match="DETECTION_DESCRIPTOR"):
        check_release_switches(r)
    r.DETECTION_DESCRIPTOR = "release"
    check_release_switches(r)


def test_train_resize_scales_targets():
    """TRAIN_RESIZE (the release trains at 480 x 864): boxes scaled per axis, masks resized with the image."""
    inst = Instances((60, 90))
    inst.gt_boxes = Boxes(torch.tensor([[9.0, 6.0, 45.0, 30.0]]))
    inst.gt_classes = torch.tensor([2])
    m = torch.zeros(1, 60, 90, dtype=torch.bool)
    m[0, 6:30, 9:45] = True
    inst.gt_masks = BitMasks(m)
    out = resize_training_instances(inst, (60, 90), (120, 270))
    assert out.image_size == (120, 270)
    torch.testing.assert_close(out.gt_boxes.tensor, torch.tensor([[27.0, 12.0, 135.0, 60.0]]))
    mask = out.gt_masks.tensor[0]
    assert mask.shape == (120, 270) and mask[13:59, 28:134].all() and not mask[:11].any() and not mask[:, :26].any()
    assert abs(int(mask.sum()) - 48 * 108) <= 4  # bilinear + 0.5: at most the corners differ
    assert torch.equal(out.gt_classes, inst.gt_classes)
    clip = {"image": [torch.zeros(3, 60, 90, dtype=torch.uint8)] * 2, "instances": [inst, inst]}
    frames, targets = training_images([clip], (120, 270))
    assert len(frames) == 2 and all(t.image_size == (120, 270) for t in targets)
    assert training_images([clip])[1][0] is inst  # no resize: the loader's targets


def test_tracker_starts_and_updates_tracks_as_the_release():
    """The tracker's hooks: a new track's Gaussian is the release's update of N(0, softplus(init_var)) with its
    detection; an active track's is the release's update with its assigned detection; masks come from the
    release-input CNN."""
    from tests.rgnn_fixtures import _synthetic_detections, _tracker

    torch.manual_seed(0)
    tracker = _tracker(
        mask_reweight_input="release", mask_residual=False, init_threshold=-50.0, inactive_threshold=-50.0
    ).eval()
    frames, _, _ = _synthetic_detections(b=1, length=2, seed=5)
    upd = tracker.appearance_update
    state = tracker.init_state(1, torch.device("cpu"))
    with torch.no_grad():
        out = tracker.step(state, frames[0])
        started = state.alive[0]
        assert started.sum() == 4 and out.mask_logits.shape[0] == 4
        x = frames[0].appearance[0, :4]  # detection order = slot order
        em = torch.sigmoid(upd.alpha(state.h[0, :4]))
        torch.testing.assert_close(state.app_mean[0, :4], em * x)
        want_mean, want_var = upd.update(torch.zeros_like(x), F.softplus(upd.init_var).expand_as(x), x, state.h[0, :4])
        torch.testing.assert_close(state.app_var[0, :4], want_var)
        prev_mean, prev_var = state.app_mean.clone(), state.app_var.clone()
        out = tracker.step(state, frames[1])
        old = out.mask_index[:, 1] < 4  # tracks started at frame 0 (the others start now)
        assert old.sum() == 4
        slots, det = out.mask_index[old, 1], out.mask_det[old]
        x1 = frames[1].appearance[0, det]
        want_mean, want_var = upd.update(prev_mean[0, slots], prev_var[0, slots], x1, state.h[0, slots])
        torch.testing.assert_close(state.app_mean[0, slots], want_mean)
        torch.testing.assert_close(state.app_var[0, slots], want_var)
        want_masks = tracker.mask_reweighting.from_detections(
            state.h[0, slots], frames[1].masks[0, det], frames[1].boxes[0, det], tracker.mask_stride
        )
        torch.testing.assert_close(out.mask_logits[old], want_masks)
