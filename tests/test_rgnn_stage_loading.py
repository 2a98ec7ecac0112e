"""Stage 2 of RGNN-VIS takes only the segmenter (backbone + detector) from a stage-1 checkpoint, logs it, and
loads everything from its own (stage-2) checkpoints."""

import logging

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from tests.rgnn_fixtures import _randomise, tiny_cfg

torch.set_num_threads(1)


def _save(model, directory, name="model"):
    DetectionCheckpointer(model, save_dir=str(directory)).save(name)
    return str(directory / f"{name}.pth")


def _split(model):
    sd = model.state_dict()
    seg = {k: v.clone() for k, v in sd.items() if k.startswith(("backbone.", "detector."))}
    rest = {k: v.clone() for k, v in sd.items() if k.startswith(("tracker.", "appearance."))}
    return seg, rest


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stage2_takes_only_the_segmenter_from_stage1(tmp_path, caplog):
    stage1 = _randomise(build_model(tiny_cfg(stage=1)), 1)
    path = _save(stage1, tmp_path)
    seg1, rest1 = _split(stage1)

    torch.manual_seed(3)
    stage2 = build_model(tiny_cfg(stage=2, SCORING_EVIDENCE=True))  # as configs/vis_rgnn/synthetic_R18_stage2
    _, rest2 = _split(stage2)
    scoring = [k for k in rest2 if "scoring" in k and k.endswith("cls.weight")]
    assert scoring and all(rest2[k].abs().sum() == 0 for k in scoring)  # zero-initialised scoring layer
    with caplog.at_level(logging.INFO, logger="vis_rgnn"):
        DetectionCheckpointer(stage2).load(path)
    seg, rest = _split(stage2)
    assert _equal(seg, seg1)  # the segmenter came from stage 1
    assert _equal(rest, rest2) and not _equal(rest, rest1)  # tracker side kept its own initialisation
    assert all(stage2.state_dict()[k].abs().sum() == 0 for k in scoring)
    assert int(stage2.rgnn_stage) == 2
    msg = [r.getMessage() for r in caplog.records if "took the segmenter only" in r.getMessage()]
    assert msg and "a stage-1 checkpoint" in msg[0] and "ignored" in msg[0] and "tracker" in msg[0]


def test_stage2_checkpoint_loads_completely(tmp_path):
    trained = _randomise(build_model(tiny_cfg(stage=2)), 5)
    path = _save(trained, tmp_path)
    fresh = build_model(tiny_cfg(stage=2))
    DetectionCheckpointer(fresh).load(path)
    assert _equal(fresh.state_dict(), trained.state_dict())


def test_stage1_model_loads_a_stage2_checkpoint_completely(tmp_path):
    trained = _randomise(build_model(tiny_cfg(stage=2)), 6)
    path = _save(trained, tmp_path)
    s1 = build_model(tiny_cfg(stage=1))
    DetectionCheckpointer(s1).load(path)
    a, b = s1.state_dict(), trained.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k != "rgnn_stage") and int(s1.rgnn_stage) == 1


def test_checkpoint_without_stage_marker_is_read_as_segmenter_with_warning(tmp_path, caplog):
    stage1 = _randomise(build_model(tiny_cfg(stage=1)), 7)
    sd = {k: v for k, v in stage1.state_dict().items() if k != "rgnn_stage"}
    torch.save({"model": sd}, tmp_path / "old.pth")
    stage2 = build_model(tiny_cfg(stage=2))
    _, rest2 = _split(stage2)
    with caplog.at_level(logging.INFO, logger="vis_rgnn"):
        DetectionCheckpointer(stage2).load(str(tmp_path / "old.pth"))
    seg, rest = _split(stage2)
    assert _equal(seg, _split(stage1)[0]) and _equal(rest, rest2)
    assert any(r.levelno == logging.WARNING and "no 'rgnn_stage' entry" in r.getMessage() for r in caplog.records)
