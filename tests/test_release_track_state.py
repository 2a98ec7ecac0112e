"""Track state of the authors' RGNN-VIS release (rgnnvis/models/rgnn.py ``TrackDescriptor``, ``HardAssigner``,
``TrackModule``; docs/rgnn_release_port.md tracker items 3, 4, 8, 12): the empty track's own LSTM and Gaussian,
per-track argmax assignment with threshold -2, zero boxes of tracks without a detection, new tracks' appearance
(the placeholder after one update), the release's thresholds in every config, and the removed switches as
deprecated keys. Oracles follow the release's formulas."""

import logging
import os

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg

from vis_rgnn.association import gnn_association
from vis_rgnn.config import DEPRECATED_KEYS, add_rgnn_config
from vis_rgnn.track_state import FrameDetections
from vis_rgnn.tracker import RGNNTracker

torch.set_num_threads(1)
K, A, D = 3, 6, 8  # classes, appearance dim, embedding dim


def _tracker(**kw):
    torch.manual_seed(0)
    args = dict(
        num_classes=K,
        appearance_dim=A,
        dim=D,
        gate_hidden=4,
        residual_hidden=4,
        max_tracks=4,
    )
    args.update(kw)
    return RGNNTracker(**args).eval()


def _frame(seed, valid=(True, True, False)):
    g = torch.Generator().manual_seed(seed)
    m = len(valid)
    xy = torch.rand(1, m, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + 20], -1)
    logits = torch.randn(1, m, K + 1, generator=g)
    return FrameDetections(
        boxes=boxes,
        class_probs=logits.softmax(-1),
        scores=torch.rand(1, m, generator=g),
        masks=torch.rand(1, m, 24, 24, generator=g),
        appearance=torch.randn(1, m, A, generator=g),
        valid=torch.tensor([valid]),
        image_sizes=torch.tensor([[96.0, 96.0]]),
        class_logits=logits,
        background_appearance=torch.randn(1, A, generator=g),
    )


def test_empty_track_lstm_and_gaussian():
    """Frame 0: the empty track's Gaussian starts at the frame's background descriptor with variance
    softplus(init); every frame its LSTM reads its final GNN vertex and its mean moves towards the frame's
    descriptor at the rate predicted from its new embedding: mean' = (1 - eta) mean + eta x."""
    tr = _tracker()
    state = tr.init_state(1, "cpu")
    torch.testing.assert_close(state.empty_app_var, F.softplus(torch.full((1, A), -7.0)))
    f0, f1 = _frame(1), _frame(2)
    captured = []
    tr.gnn.register_forward_hook(lambda mod, inp, out: captured.append(out["empty"].clone()))
    with torch.no_grad():
        tr.step(state, f0)
        h0, c0 = tr.empty_gate(captured[0], torch.zeros(1, D), torch.zeros(1, D))
        torch.testing.assert_close(state.empty_h, h0)
        torch.testing.assert_close(state.empty_c, c0)
        torch.testing.assert_close(state.empty_app_mean, f0.background_appearance)  # (1 - eta) x0 + eta x0
        mean0, var0 = state.empty_app_mean.clone(), state.empty_app_var.clone()
        tr.step(state, f1)
        h1, _ = tr.empty_gate(captured[1], h0, c0)
        torch.testing.assert_close(state.empty_h, h1)
        eta = torch.sigmoid(tr.appearance_update.alpha(h1))
        torch.testing.assert_close(state.empty_app_mean, (1 - eta) * mean0 + eta * f1.background_appearance)
        assert not torch.equal(state.empty_app_var, var0)  # updated every frame
    assert bool(state.empty_ready.all())


def test_empty_track_reads_its_state_not_a_constant():
    """The GNN's empty-track vertex at frame t is the LSTM output of frame t - 1 (zero at frame 0)."""
    tr = _tracker()
    seen = []
    tr.gnn.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs["empty"].clone()), with_kwargs=True)
    state = tr.init_state(1, "cpu")
    with torch.no_grad():
        tr.step(state, _frame(1))
        after0 = state.empty_h.clone()
        tr.step(state, _frame(2))
    torch.testing.assert_close(seen[0], torch.zeros(1, D))
    torch.testing.assert_close(seen[1], after0)


def test_per_track_argmax_not_one_to_one():
    """HardAssigner: each track takes its best detection when that logit >= -2 (two tracks may take the same
    one, which may also start a new track); a new track needs a new-track logit above -2."""
    match = torch.tensor([[[-1.0, -3.0, 0.5], [-2.5, -3.0, -1.9], [-2.1, -2.2, -2.05]]])  # (1, 3 tracks, 3 dets)
    new = torch.tensor([[-1.9, -2.1, 0.0]])
    edge_mask = torch.ones(1, 3, 3, dtype=torch.bool)
    valid = torch.ones(1, 3, dtype=torch.bool)
    assigned, started = gnn_association(match, new, edge_mask, valid, -2.0, -2.0)
    assert assigned.tolist() == [[2, 2, -1]]  # tracks 0 and 1 both take detection 2; track 2's best is -2.05
    assert started.tolist() == [[True, False, True]]  # detection 2 is held and also starts a track


def test_inactive_boxes_zero_and_new_track_appearance():
    """A track without a detection gets box 0 (TrackModule); a new track's Gaussian is the placeholder (mean 0,
    initial variance) after one update with its embedding: mean = eta x."""
    tr = _tracker()
    with torch.no_grad():
        tr.association_heads.new_track.bias.fill_(10.0)  # every valid detection starts a track
        tr.association_heads.match.bias.fill_(-10.0)  # and no track holds a detection afterwards
    state = tr.init_state(1, "cpu")
    f0 = _frame(1)
    with torch.no_grad():
        tr.step(state, f0)
        assert state.alive[0].tolist() == [True, True, False, False]
        torch.testing.assert_close(state.boxes[0, :2], f0.boxes[0, :2])
        eta = torch.sigmoid(tr.appearance_update.alpha(state.h[0, :2]))
        torch.testing.assert_close(state.app_mean[0, :2], eta * f0.appearance[0, :2])
        tr.association_heads.new_track.bias.fill_(-10.0)
        tr.step(state, _frame(2))
    assert state.alive[0].tolist() == [True, True, False, False]
    torch.testing.assert_close(state.boxes[0, :2], torch.zeros(2, 4))  # inactive: box 0


def _cfg(path):
    cfg = get_cfg()
    add_rgnn_config(cfg)
    cfg.merge_from_file(path)
    return cfg.MODEL.RGNN


@pytest.mark.parametrize(
    "path",
    [
        "configs/vis_rgnn/release_R50_ytvis19.yaml",
        "configs/vis_rgnn/R50_FPN_stage1_120ep_ytvis19.yaml",
        "configs/vis_rgnn/R50_FPN_stage2_150ep_ytvis19.yaml",
        "configs/vis_rgnn/R101_FPN_stage2_150ep_ytvis19.yaml",
        "configs/vis_rgnn/synthetic_R18_stage2.yaml",
    ],
)
def test_release_thresholds_in_every_config(path):
    r = _cfg(path)
    assert (r.INACTIVE_THRESHOLD, r.INIT_THRESHOLD) == (-2.0, -2.0)


def test_removed_switches_are_deprecated_keys(tmp_path, caplog):
    """A config written before the release's tracker became the only one (or a checkpoint's config.yaml) still
    loads: every removed switch is a deprecated key, ignored with detectron2's warning, from a file or a list."""
    base = os.path.abspath("configs/vis_rgnn/synthetic_R18_stage2.yaml")
    old = tmp_path / "old.yaml"
    old.write_text(
        f"""_BASE_: "{base}"
MODEL:
  RGNN:
    GNN:
      DET_EMPTY_GATE: False
      INPUTS: "ours"
      RELEASE_BLOCKS: False
    EMPTY_TRACK: "learned"
    INACTIVE_BOXES: "last"
    NEW_TRACK_APPEARANCE: "detection"
    SLOT_EVICTION: True
    NEW_TRACK_ORDER: "logit"
    NEW_TRACK_INIT: "new_track_edge"
    APPEARANCE_UPDATE_RELEASE: False
    TRACK_CONFIDENCE: "foreground"
    RESULTS: "online"
    INACTIVE_THRESHOLD: 0.0
"""
    )
    assert len(DEPRECATED_KEYS) == 12
    with caplog.at_level(logging.WARNING):
        r = _cfg(str(old))
    for key in DEPRECATED_KEYS:
        assert f"Deprecated config key (ignoring): {key}" in caplog.text
        node, leaf = key.split(".")[:-1], key.split(".")[-1]
        parent = r
        for name in node[2:]:
            parent = parent[name]
        assert leaf not in parent
    assert r.INACTIVE_THRESHOLD == 0.0  # a number, not a switch: kept
    cfg = get_cfg()
    add_rgnn_config(cfg)
    cfg.merge_from_list(["MODEL.RGNN.EMPTY_TRACK", "learned", "MODEL.RGNN.GNN.INPUTS", "ours"])
    assert "EMPTY_TRACK" not in cfg.MODEL.RGNN and "INPUTS" not in cfg.MODEL.RGNN.GNN
    add_rgnn_config(cfg.clone())  # idempotent: the keys are registered once


def test_release_tracker_step_at_most_4_host_syncs_per_frame(monkeypatch):
    """The release's tracker keeps the online step GPU-minded (same budget as tests/test_host_syncs_rgnn.py), with
    every detection starting a track and every track holding one."""
    import tests.rgnn_step_video as reg

    release = {
        "STAGE": 2,
        "INIT_THRESHOLD": -20.0,  # random weights: every detection starts a track, every track holds one
        "INACTIVE_THRESHOLD": -20.0,
    }
    monkeypatch.setitem(reg.VARIANTS, "release_tracker", release)
    counts, outputs = reg.step_host_syncs(reg.build("release_tracker"), reg.video())
    assert outputs > 0
    assert max(counts) <= 4, counts
