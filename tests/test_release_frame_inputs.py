"""What the meta-architecture feeds the release tracker (issue 21): the detector's raw class logits (the release's
``det_stuff``) and the whole-image background descriptor the empty track observes (the release's
``new_background``), at inference and in stage-2 training. Checked on the paper's stage-2 config shrunk to an
R18-sized network with random weights."""

import torch
from detectron2.modeling import build_model

import vis_rgnn.meta_arch as meta_arch
from tests.rgnn_fixtures import PAPER_STAGE2, small_cfg
from tests.rgnn_fixtures import paper_clip as _clip

torch.set_num_threads(1)
LOW = {"DETECTOR__SCORE_LOGIT_THRESH": -50.0, "INIT_THRESHOLD": -50.0, "INACTIVE_THRESHOLD": -50.0}


def _model():
    cfg = small_cfg(PAPER_STAGE2, STAGE=2, **LOW)
    torch.manual_seed(0)
    return build_model(cfg)


def _rows_of(rows: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Distance of every row (M, C) to its nearest row of table (A, C), max-abs."""
    return (rows[:, None] - table[None]).abs().amax(dim=-1).amin(dim=1)


def test_step_feeds_raw_class_logits_and_the_image_descriptor(monkeypatch):
    model = _model().eval()
    video = _clip(97, 141, 2, 0)
    seen = []
    real = model.tracker.step

    def recording(state, dets, *args):
        seen.append(dets)
        return real(state, dets, *args)

    monkeypatch.setattr(model.tracker, "step", recording)
    state = model.init_video_state()
    frame = {"image": video["image"][0], "height": 97, "width": 141, "frame_idx": 0}
    model.step(frame, state)
    (fd,) = seen
    with torch.no_grad():
        images = model.preprocess([frame["image"]])
        fpn, bottom_up = model.extract_features(images)
        feats = [fpn[f] for f in model.detector.in_features]
        head_logits = model.detector._predict(fpn, feats)[0][0]  # (A, K+1)
        descriptor = model.appearance.image_descriptor(bottom_up)  # (1, A)
    valid = fd.valid[0]
    assert valid.sum() >= 2
    logits = fd.class_logits[0, valid]
    # the raw logits of the detections' anchors, not the log-probabilities (those differ by logsumexp per row)
    assert _rows_of(logits, head_logits).max() < 1e-5
    assert (logits.logsumexp(dim=-1).abs() > 1e-3).all()
    torch.testing.assert_close(logits.log_softmax(-1), fd.class_probs[0, valid].log(), rtol=1e-5, atol=1e-5)
    # the empty track's observation: the frame's whole-image descriptor; frame 0 sets its mean to it exactly
    torch.testing.assert_close(fd.background_appearance, descriptor)
    assert descriptor.abs().max() > 1e-3
    torch.testing.assert_close(state["tracks"].empty_app_mean, descriptor, rtol=1e-5, atol=1e-6)


def test_stage2_training_feeds_raw_class_logits_and_the_image_descriptor(monkeypatch):
    model = _model().train()
    clip = _clip(60, 90, 2, 1)
    seen = {}
    real = meta_arch.tracker_clip_losses

    def recording(tracker, frames, identities, targets, *args):
        seen["frames"] = frames
        return real(tracker, frames, identities, targets, *args)

    monkeypatch.setattr(meta_arch, "tracker_clip_losses", recording)
    model([clip])
    with torch.no_grad():
        images = model.preprocess(clip["image"])
        fpn, bottom_up = model.extract_features(images)
        feats = [fpn[f] for f in model.detector.in_features]
        head_logits = model.detector._predict(fpn, feats)[0]  # (T, A, K+1)
        descriptor = model.appearance.image_descriptor(bottom_up)  # (T, A)
    for t, fd in enumerate(seen["frames"]):
        valid = fd.valid[0]
        assert valid.any()
        assert _rows_of(fd.class_logits[0, valid], head_logits[t]).max() < 1e-5
        torch.testing.assert_close(fd.background_appearance, descriptor[t : t + 1], rtol=1e-5, atol=1e-6)
