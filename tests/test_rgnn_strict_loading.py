"""RGNN-VIS checkpoints load strictly (issue 23): the ``rgnn_stage`` marker is neither missing nor unexpected in
a strict ``load_state_dict``, the model's own marker is kept, and the demo's strict loader accepts the
checkpoints the trainer writes."""

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from projects.engine.checkpoint import load_weights
from tests.rgnn_fixtures import _randomise, tiny_cfg
from vis_rgnn.meta_arch import STAGE_KEY

torch.set_num_threads(1)


def test_strict_load_of_own_state_dict():
    trained = _randomise(build_model(tiny_cfg(stage=2)), 5)
    fresh = build_model(tiny_cfg(stage=2))
    sd = trained.state_dict()
    result = fresh.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in sd.items())
    assert STAGE_KEY in sd  # the caller's dict is left as it was


def test_stage1_state_dict_into_stage2_reports_no_stage_key():
    stage1 = _randomise(build_model(tiny_cfg(stage=1)), 1)
    stage2 = build_model(tiny_cfg(stage=2))
    result = stage2.load_state_dict(stage1.state_dict(), strict=False)
    assert STAGE_KEY not in result.missing_keys and STAGE_KEY not in result.unexpected_keys
    assert not result.unexpected_keys
    # what stage 2 does not take from a stage-1 checkpoint, and nothing else, is missing
    assert result.missing_keys and all(k.startswith(("tracker.", "appearance.")) for k in result.missing_keys)
    assert int(stage2.rgnn_stage) == 2


def test_stage2_state_dict_into_stage1_is_strict_and_keeps_the_marker():
    stage2 = _randomise(build_model(tiny_cfg(stage=2)), 6)
    stage1 = build_model(tiny_cfg(stage=1))
    result = stage1.load_state_dict(stage2.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert int(stage1.rgnn_stage) == 1


def test_demo_loads_a_trainer_checkpoint(tmp_path):
    trained = _randomise(build_model(tiny_cfg(stage=2)), 7)
    DetectionCheckpointer(trained, save_dir=str(tmp_path)).save("model_final")  # what train_net.py writes
    assert STAGE_KEY in torch.load(tmp_path / "model_final.pth", weights_only=False)["model"]
    fresh = build_model(tiny_cfg(stage=2))
    load_weights(fresh, str(tmp_path / "model_final.pth"))
    a, b = fresh.state_dict(), trained.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
