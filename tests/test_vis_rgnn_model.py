"""RGNN-VIS model tests on tiny synthetic tensors: both training stages, the tracker's learning signal, long-run
stability of the recurrent state, and the online inference contract of docs/interfaces.md."""

import pytest
import torch
from detectron2.modeling import build_model

from projects.modeling import run_online_inference
from projects.utils.masks import decode_mask
from tests.rgnn_fixtures import H, W, _clip, _synthetic_detections, _tracker, tiny_cfg
from vis_rgnn.losses import tracker_clip_losses

torch.set_num_threads(1)


def test_num_classes_must_be_resolved():
    cfg = tiny_cfg()
    cfg.MODEL.NUM_CLASSES = -1
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        build_model(cfg)


def test_stage1_losses_and_gradients():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(stage=1)).train()
    losses = model([_clip(1, 0), _clip(1, 1)])
    assert set(losses) == {"loss_det_class", "loss_det_box", "loss_det_mask", "loss_det_semantic"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.bottom_up.stem.conv1.weight.grad is not None
    assert model.detector.protonet.post[-1].weight.grad.abs().sum() > 0


def test_stage2_freezes_segmenter_and_trains_tracker():
    cfg = tiny_cfg(stage=2, DETECTOR__SCORE_LOGIT_THRESH=-50.0, TRAIN_INIT_THRESHOLD=-50.0)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert not model.backbone.training and not model.detector.training  # frozen incl. BatchNorm statistics
    assert model.tracker.training
    losses = model([_clip(3, 0), _clip(3, 1)])
    assert set(losses) == {"loss_class", "loss_mask", "loss_match", "loss_new_track"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is None for p in model.detector.parameters())
    assert model.appearance.convs["res4"].weight.grad.abs().sum() > 0
    assert model.tracker.association_heads.match.weight.grad.abs().sum() > 0
    assert model.tracker.mask_reweighting.conv2.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"ASSOCIATION": "heuristic", "SCORING": "average", "HEURISTIC__SCORE_THRESH": 0.0},
        {"APPEARANCE__ENABLED": False, "GATING": "simple"},
        {"SCORING_EVIDENCE": True},
        {"SCORING": "yolact_average", "APPEARANCE__UPDATE": "constant_variance"},
    ],
)
def test_online_inference_contract(options):
    low = {"DETECTOR__SCORE_LOGIT_THRESH": -50.0, "INIT_THRESHOLD": -50.0, "INACTIVE_THRESHOLD": -50.0}
    cfg = tiny_cfg(stage=2, **low, **options)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    torch.nn.init.constant_(model.tracker.mask_reweighting.conv2.bias, 5.0)  # untrained: make masks non-empty
    video = _clip(4)
    del video["instances"]
    state = model.init_video_state()
    frame = {"image": video["image"][0], "height": 2 * H, "width": 2 * W, "frame_idx": 0}
    inst = model.step(frame, state)
    assert inst.image_size == (2 * H, 2 * W) and len(inst) > 0
    assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape[1:] == (2 * H, 2 * W)
    assert inst.pred_masks.sum(0).max() <= 1  # each pixel belongs to at most one track
    assert inst.track_ids.dtype == torch.long and inst.pred_classes.max() < 3
    (result,) = model([video])
    assert set(result) >= {"video_id", "height", "width", "length", "tracks"}
    assert result["tracks"], "low thresholds must produce tracks"
    for track in result["tracks"]:
        assert 0.0 <= track["score"] <= 1.0 and 0 <= track["category_id"] < 3
        assert len(track["segmentations"]) == 4
        rle = next(s for s in track["segmentations"] if s is not None)
        assert decode_mask(rle, 2 * H, 2 * W).shape == (2 * H, 2 * W)


def test_tracks_cut_by_max_tracks_are_reported():
    """``TEST.VIDEO.MAX_TRACKS`` drops the lowest-scored tracks; the video's diagnostics say how many."""
    cfg = tiny_cfg(stage=2, DETECTOR__SCORE_LOGIT_THRESH=-50.0, INIT_THRESHOLD=-50.0, INACTIVE_THRESHOLD=-50.0)
    cfg.TEST.VIDEO.MAX_TRACKS = 1
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    torch.nn.init.constant_(model.tracker.mask_reweighting.conv2.bias, 5.0)  # untrained: make masks non-empty
    video = _clip(4)
    del video["instances"]
    uncapped = len(run_online_inference(model, video, max_tracks=10**6)["tracks"])
    assert uncapped > 1
    (result,) = model([video])
    assert len(result["tracks"]) == 1
    diagnostics = result["diagnostics"]
    assert {k: diagnostics[k] for k in ("videos_over_max_tracks", "tracks_over_max_tracks")} == {
        "videos_over_max_tracks": 1,
        "tracks_over_max_tracks": uncapped - 1,
    }
    # Every detection starts a track here, so the 24 slots (MODEL.RGNN.MAX_TRACKS) fill and drop new tracks too.
    assert diagnostics["frames_over_track_slots"] >= 1 and diagnostics["tracks_over_track_slots"] >= 1


# ------------------------------------------------------------------------------- tracker on synthetic tensors


def test_short_stage2_run_lowers_every_loss():
    """Every detection starts a track and every track keeps its best detection, so the set of tracks is the
    same at every step and the (sum-normalised, §3.5) losses are comparable across steps. 60 steps: the release's
    GNN (raw inputs on the release's fixed scales, residuals ending in a ReLU) lowers the match loss by a few
    percent in the first 30 and halves it by 60."""
    torch.manual_seed(0)
    tracker = _tracker(train_init_threshold=-50.0, inactive_threshold=-50.0, max_tracks=24).train()
    data = _synthetic_detections(b=2, length=5, seed=3)
    weights = {"loss_class": 1.0, "loss_mask": 1.0, "loss_match": 4.0, "loss_new_track": 1.0}
    opt = torch.optim.Adam(tracker.parameters(), lr=3e-3)
    history = []
    for _ in range(60):
        losses = tracker_clip_losses(tracker, *data, frame_decay=0.8, loss_weights=weights)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    for key in weights:
        first = sum(h[key] for h in history[:5]) / 5
        last = sum(h[key] for h in history[-5:]) / 5
        assert last < 0.75 * first, f"{key}: {first:.3f} -> {last:.3f}"


def test_recurrent_state_stays_finite_over_200_frames():
    torch.manual_seed(0)
    tracker = _tracker(init_threshold=-2.5, inactive_threshold=-3.0).eval()
    frames, _, _ = _synthetic_detections(b=1, length=200, seed=5)
    state = tracker.init_state(1, torch.device("cpu"))
    with torch.no_grad():
        for frame in frames:
            out = tracker.step(state, frame)
            assert torch.isfinite(out.class_logits).all() and torch.isfinite(out.mask_logits).all()
    for tensor in (state.h, state.c, state.app_mean, state.app_var):
        assert torch.isfinite(tensor).all()
    assert (state.app_var > 0).all()
    assert state.alive.any() and state.next_id[0] > 0


def test_proto_detail_from_a_bottom_up_level():
    """DETECTOR.PROTO_DETAIL_FEATURE res2: res2 (read in the backbone's one pass) is added to the up-sampled
    protonet map; stage 1 trains its conv, the image segmenter, stage 2 and the online step run with it, and a
    level not at the prototypes' stride is refused."""
    cfg = tiny_cfg(stage=1, DETECTOR__PROTO_DETAIL_FEATURE="res2")
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    torch.manual_seed(0)
    model = build_model(cfg).train()
    losses = model([_clip(1, 0), _clip(1, 1)])
    losses["loss_det_mask"].backward()
    assert model.detector.protonet.detail[0].weight.grad.abs().sum() > 0
    assert model.backbone.bottom_up.res2[0].conv1.weight.grad.abs().sum() > 0  # through the detail path too

    seg_cfg = cfg.clone()
    seg_cfg.MODEL.META_ARCHITECTURE = "YolactSegmenter"
    segmenter = build_model(seg_cfg).eval()
    with torch.no_grad():
        (out,) = segmenter([{"image": _clip(1, 0)["image"][0]}])
    assert out["instances"].pred_masks.shape[-2:] == (H, W)

    stage2 = cfg.clone()
    stage2.MODEL.RGNN.STAGE = 2
    stage2.MODEL.RGNN.DETECTOR.SCORE_LOGIT_THRESH = stage2.MODEL.RGNN.TRAIN_INIT_THRESHOLD = -50.0
    model2 = build_model(stage2).train()
    assert all(torch.isfinite(v) for v in model2([_clip(3, 0), _clip(3, 1)]).values())
    video = _clip(4, 0)
    del video["instances"]
    with torch.no_grad():
        (result,) = model2.eval()([video])
    assert result["length"] == 4 and all(len(t["segmentations"]) == 4 for t in result["tracks"])

    cfg.MODEL.RGNN.DETECTOR.PROTO_DETAIL_FEATURE = "res3"
    with pytest.raises(ValueError, match="PROTO_DETAIL_FEATURE"):
        build_model(cfg)
