"""The converter of the authors' RGNN-VIS release checkpoints (vis_rgnn/convert_release.py) on synthetic
checkpoints with the release's exact key layout and shapes (tests/data/rgnnvis_release_layout.txt)."""

import logging
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model

import vis_rgnn.meta_arch  # noqa: F401
from projects.engine.checkpoint import WeightsMismatchError, load_weights
from tests.rgnn_fixtures import build_release_model
from vis_rgnn.config import add_rgnn_config
from vis_rgnn.convert_release import (
    RELEASE_CONFIG,
    TRACKER_PREFIXES,
    convert_release_state_dict,
    main,
    release_key,
)
from vis_rgnn.release_checkpoint import Placeholder, read_release_checkpoint
from vis_rgnn.stage_weights import STAGE_KEY, TRACKER_VERSION, TRACKER_VERSION_KEY

torch.set_num_threads(1)
LAYOUT = os.path.join(os.path.dirname(__file__), "data", "rgnnvis_release_layout.txt")
_DTYPES = {"float32": torch.float32, "int64": torch.int64}


def release_layout():
    out = []
    with open(LAYOUT) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            key, shape, dtype = line.split()
            out.append((key, () if shape == "-" else tuple(int(d) for d in shape.split("x")), _DTYPES[dtype]))
    return out


def fake_net(segmenter_only=False, seed=0):
    """Release state dict with the layout's keys and shapes; small random values (zeros for big tensors)."""
    g = torch.Generator().manual_seed(seed)
    net = {}
    for key, shape, dtype in release_layout():
        if segmenter_only and key.startswith(TRACKER_PREFIXES):
            continue
        if dtype == torch.int64:
            net[key] = torch.tensor(7, dtype=dtype)
        elif int(np.prod(shape)) <= 200_000:
            net[key] = torch.randn(shape, generator=g)
        else:
            net[key] = torch.zeros(shape)
    return net


class _Trap:
    """Pickles as a call of ``open(marker, "w")``: unpickling it for real would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def save_release_checkpoint(path, net, marker, zipfile=True):
    """torch.save the way rgnnvis/engines/vis_trainer.py does, with ``stats`` holding an object of a class that
    exists only while saving (``rgnnvis.utils.stats.AverageMeter``) and a trap that would run on unpickling."""
    names = ["rgnnvis", "rgnnvis.utils", "rgnnvis.utils.stats"]
    mods = {n: types.ModuleType(n) for n in names}
    meter_cls = type("AverageMeter", (), {"__module__": "rgnnvis.utils.stats"})
    mods["rgnnvis.utils.stats"].AverageMeter = meter_cls
    sys.modules.update(mods)
    try:
        meter = meter_cls()
        meter.avg, meter.count = 0.5, 3
        torch.save(
            {
                "epoch": 120,
                "net_type": "RGNN",
                "net": net,
                "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4}]},
                "stats": {"loss": meter, "trap": _Trap(str(marker))},
                "device": torch.device("cpu"),
            },
            path,
            _use_new_zipfile_serialization=zipfile,
        )
    finally:
        for n in names:
            sys.modules.pop(n, None)


@pytest.fixture(scope="module")
def release_model():
    cfg = get_cfg()
    add_rgnn_config(cfg)
    cfg.merge_from_file(RELEASE_CONFIG)
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = "cpu", ""
    return build_model(cfg)


@pytest.fixture(scope="module")
def shapes(release_model):
    return {k: tuple(v.shape) for k, v in release_model.state_dict().items()}


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_reader_never_runs_foreign_pickles(tmp_path, zipfile):
    marker = tmp_path / "executed"
    net = {"backbone.conv1.weight": torch.randn(64, 3, 7, 7)}
    save_release_checkpoint(tmp_path / "ck.pth.tar", net, marker, zipfile=zipfile)
    with pytest.raises(pickle.UnpicklingError):  # weights_only refuses the release's classes
        torch.load(tmp_path / "ck.pth.tar", weights_only=True)
    got, meta = read_release_checkpoint(str(tmp_path / "ck.pth.tar"))
    assert not marker.exists()
    torch.testing.assert_close(got["backbone.conv1.weight"], net["backbone.conv1.weight"])
    assert meta["epoch"] == 120 and meta["net_type"] == "RGNN"
    assert isinstance(meta["stats"]["loss"], Placeholder) and meta["stats"]["loss"].state == {"avg": 0.5, "count": 3}
    assert isinstance(meta["stats"]["trap"], Placeholder)


def test_reader_rejects_non_checkpoints(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pth"):
        read_release_checkpoint(str(tmp_path / "junk.pth"))
    torch.save({"epoch": 1, "optimizer": {}}, tmp_path / "nonet.pth")
    with pytest.raises(ValueError, match="no 'net'"):
        read_release_checkpoint(str(tmp_path / "nonet.pth"))


def test_every_release_key_is_mapped(shapes):
    targets, tracker_targets = {}, {}
    for key, shape, _ in release_layout():
        name = release_key(key)
        if not name:  # the LSTM's second bias, summed into input.bias
            assert key.endswith("prev_out.bias")
            continue
        found = tracker_targets if key.startswith(TRACKER_PREFIXES) else targets
        assert name not in found, f"{key} and {found.get(name)} both map to {name}"
        found[name] = key
        assert shapes[name] == shape, f"{key} -> {name}: {shape} vs {shapes[name]}"
    assert len(targets) == 318 + 36 and len(tracker_targets) + 2 == 492 - 354
    # the release's segmenter covers the whole segmenter of the release config's model, its tracker the rest
    seg = {k for k in shapes if k.startswith(("backbone.", "detector."))}
    assert seg == set(targets)
    assert {k for k in shapes if k.startswith(("tracker.", "appearance."))} == set(tracker_targets)


def test_segmenter_checkpoint_converts_to_stage1_and_loads(tmp_path, release_model, caplog):
    net = fake_net(segmenter_only=True)
    marker = tmp_path / "executed"
    save_release_checkpoint(tmp_path / "release.pth.tar", net, marker)
    with caplog.at_level(logging.INFO, logger="vis_rgnn.convert_release"):
        assert main([str(tmp_path / "release.pth.tar"), str(tmp_path / "out.pkl")]) == 0
    assert not marker.exists()
    lines = [r.getMessage() for r in caplog.records if r.name == "vis_rgnn.convert_release"]
    assert len(lines) == 1 and "354 tensors" in lines[0] and "41 classes" in lines[0], lines
    with open(tmp_path / "out.pkl", "rb") as f:
        ckpt = pickle.load(f)
    assert ckpt["matching_heuristics"] is False and int(ckpt["model"]["rgnn_stage"]) == 1
    DetectionCheckpointer(release_model).load(str(tmp_path / "out.pkl"))
    sd = release_model.state_dict()
    # class layout: release per anchor [background, c1..c40] -> ours [c1..c40, background]
    conf = net["detector.prediction_layers.0.conf_layer.bias"].view(3, 41)
    ours = sd["detector.head.cls.bias"].view(3, 41)
    torch.testing.assert_close(ours[:, :40], conf[:, 1:])
    torch.testing.assert_close(ours[:, 40], conf[:, 0])
    torch.testing.assert_close(sd["detector.semantic.weight"], net["detector.semantic_seg_conv.weight"])
    torch.testing.assert_close(sd["backbone.bottom_up.res5.2.conv3.norm.bias"], net["backbone.layer4.2.bn3.bias"])
    torch.testing.assert_close(sd["backbone.fpn_lateral5.weight"], net["detector.fpn.lat_layers.0.weight"])
    torch.testing.assert_close(sd["backbone.p7.bias"], net["detector.fpn.downsample_layers.1.bias"])


def test_full_checkpoint_converts_as_stage2(shapes):
    net = fake_net()
    out, summary = convert_release_state_dict(net, shapes)
    assert int(out["rgnn_stage"]) == 2 and summary["tracker"] == 138 - 2 and summary["tracker_dropped"] == 0
    out, summary = convert_release_state_dict(net, shapes, segmenter_only=True)
    assert int(out["rgnn_stage"]) == 1 and summary["tracker_dropped"] == 138 and summary["tensors"] == 354
    del net["track_descriptor.init_var_background"]
    with pytest.raises(KeyError, match="lacks 1 model tensors"):
        convert_release_state_dict(net, shapes)


def test_cli_full_checkpoint(tmp_path, caplog):
    """A checkpoint with the tracker converts as a stage-2 model; --segmenter-only keeps backbone + detector."""
    save_release_checkpoint(tmp_path / "full.pth.tar", fake_net(), tmp_path / "executed")
    with caplog.at_level(logging.INFO, logger="vis_rgnn.convert_release"):
        assert main([str(tmp_path / "full.pth.tar"), str(tmp_path / "full.pkl")]) == 0
    assert "stage-2 checkpoint" in caplog.records[-1].getMessage()
    with open(tmp_path / "full.pkl", "rb") as f:
        assert int(pickle.load(f)["model"]["rgnn_stage"]) == 2
    with caplog.at_level(logging.INFO, logger="vis_rgnn.convert_release"):
        assert main([str(tmp_path / "full.pth.tar"), str(tmp_path / "out.pkl"), "--segmenter-only"]) == 0
    assert "138 release tracker tensors dropped" in caplog.records[-1].getMessage()
    assert not (tmp_path / "executed").exists()


@pytest.fixture(scope="module")
def release_stage2_model():
    return build_release_model(2)


def test_full_checkpoint_loads_as_stage2_with_the_current_tracker_marker(tmp_path, release_stage2_model):
    """The release's tracker is the layout this code's tracker reads: the converted file carries the current
    ``rgnn_tracker_version`` and loads strictly into stage 2 (without the marker stage 2 would refuse it)."""
    save_release_checkpoint(tmp_path / "full.pth.tar", fake_net(), tmp_path / "executed")
    assert main([str(tmp_path / "full.pth.tar"), str(tmp_path / "full.pkl")]) == 0
    with open(tmp_path / "full.pkl", "rb") as f:
        ckpt = pickle.load(f)
    assert int(ckpt["model"][TRACKER_VERSION_KEY]) == TRACKER_VERSION
    load_weights(release_stage2_model, str(tmp_path / "full.pkl"))  # strict: no missing / unexpected key
    sd = release_stage2_model.state_dict()
    assert int(sd[STAGE_KEY]) == 2 and int(sd[TRACKER_VERSION_KEY]) == TRACKER_VERSION
    tracker = [k for k in ckpt["model"] if k.startswith(("tracker.", "appearance."))]
    assert len(tracker) == 136 and all(np.array_equal(sd[k].numpy(), ckpt["model"][k]) for k in tracker)
    del ckpt["model"][TRACKER_VERSION_KEY]
    with open(tmp_path / "unmarked.pkl", "wb") as f:
        pickle.dump(ckpt, f)
    with pytest.raises(WeightsMismatchError, match="unmarked.pkl does not match.*rgnn_tracker_version"):
        load_weights(release_stage2_model, str(tmp_path / "unmarked.pkl"))


def test_shape_mismatch_and_unknown_key_are_named(shapes):
    net = fake_net(segmenter_only=True)
    net["detector.proto_net.10.weight"] = torch.zeros(16, 256, 1, 1)
    net["detector.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(KeyError) as e:
        convert_release_state_dict(net, shapes)
    msg = str(e.value)
    assert "detector.proto_net.10.weight -> detector.protonet.post.2.weight: shape (16, 256, 1, 1)" in msg
    assert "detector.extra_head.weight" in msg
    del net["detector.extra_head.weight"], net["detector.proto_net.10.weight"]
    with pytest.raises(KeyError, match="lacks 1 segmenter tensors"):
        convert_release_state_dict(net, shapes)


def test_cli_reports_bad_file(tmp_path):
    (tmp_path / "bad.pth.tar").write_bytes(b"\x00garbage")
    with pytest.raises(SystemExit, match="bad.pth.tar"):
        main([str(tmp_path / "bad.pth.tar"), str(tmp_path / "out.pkl")])
