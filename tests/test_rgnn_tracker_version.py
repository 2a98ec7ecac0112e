"""RGNN-VIS checkpoints carry the tracker layout their tracker weights were trained with (``rgnn_tracker_version``,
vis_rgnn/stage_weights.py): a stage-2 checkpoint of the tracker from before the release's tracker became the only
one (no marker, or an older one) has the same parameter names and shapes, so stage 2 refuses it with an error
naming the file instead of loading a silently different model. Stage-1 checkpoints, checkpoints without a stage
marker and stage 2 initialised from stage 1 load as before (the segmenter did not change)."""

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from projects.engine.checkpoint import FaultTolerantCheckpointer, WeightsMismatchError, load_weights
from tests.rgnn_fixtures import _randomise, tiny_cfg
from vis_rgnn.stage_weights import STAGE_KEY, TRACKER_VERSION, TRACKER_VERSION_KEY

torch.set_num_threads(1)


def _write(tmp_path, sd, name):
    path = tmp_path / name
    torch.save({"model": sd}, path)
    return str(path)


def _old(model, version=None):
    """The model's state dict as a checkpoint written before the marker (``version`` None) or with ``version``."""
    sd = {k: v.clone() for k, v in model.state_dict().items() if k != TRACKER_VERSION_KEY}
    if version is not None:
        sd[TRACKER_VERSION_KEY] = torch.tensor(version)
    return sd


def _same(model, sd, keys):
    own = model.state_dict()
    return all(torch.equal(own[k], sd[k]) for k in keys)


def test_every_checkpoint_carries_the_current_marker(tmp_path):
    for stage in (1, 2):
        DetectionCheckpointer(build_model(tiny_cfg(stage=stage)), save_dir=str(tmp_path)).save(f"s{stage}")
        sd = torch.load(tmp_path / f"s{stage}.pth", weights_only=False)["model"]
        assert int(sd[TRACKER_VERSION_KEY]) == TRACKER_VERSION == 2


@pytest.mark.parametrize("version", [None, 1], ids=["no-marker", "older"])
def test_old_stage2_checkpoint_is_refused_naming_the_file(tmp_path, version):
    path = _write(tmp_path, _old(_randomise(build_model(tiny_cfg(stage=2)), 5), version), "model_final.pth")
    fresh = build_model(tiny_cfg(stage=2))
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    for load in (lambda: load_weights(fresh, path), lambda: FaultTolerantCheckpointer(fresh).load(path)):
        with pytest.raises(WeightsMismatchError) as e:
            load()
        msg = str(e.value)
        assert msg.startswith(f"{path} does not match") and "\n" not in msg
        assert f"'{TRACKER_VERSION_KEY}'" in msg and ("without" if version is None else f"= {version}") in msg
        assert "retrain stage 2 from its stage-1 weights (MODEL.WEIGHTS = the stage-1 checkpoint)" in msg
        assert _same(fresh, before, before)  # refused before any tensor was copied
    # a bare load_state_dict (no file known) still says what is wrong
    with pytest.raises(ValueError, match=r"^the checkpoint does not match .*retrain stage 2"):
        fresh.load_state_dict(torch.load(path, weights_only=False)["model"])


def test_newer_marker_is_refused(tmp_path):
    path = _write(tmp_path, _old(build_model(tiny_cfg(stage=2)), TRACKER_VERSION + 1), "new.pth")
    with pytest.raises(WeightsMismatchError, match="written by newer code"):
        load_weights(build_model(tiny_cfg(stage=2)), path)


def test_current_stage2_checkpoint_loads_strictly(tmp_path):
    trained = _randomise(build_model(tiny_cfg(stage=2)), 6)
    path = _write(tmp_path, _old(trained, TRACKER_VERSION), "model_final.pth")
    fresh = build_model(tiny_cfg(stage=2))
    load_weights(fresh, path)  # strict: no missing / unexpected key
    sd = trained.state_dict()
    assert _same(fresh, sd, sd)


@pytest.mark.parametrize("version", [None, 1], ids=["no-marker", "older"])
def test_stage2_from_stage1_and_unmarked_checkpoints_unaffected(tmp_path, version):
    """Stage 2 initialised from a stage-1 checkpoint or one without a stage marker, old or new: the segmenter."""
    stage1 = _randomise(build_model(tiny_cfg(stage=1)), 7)
    seg = [k for k in stage1.state_dict() if k.startswith(("backbone.", "detector."))]
    for name, sd in (("s1.pth", _old(stage1, version)), ("bare.pth", _old(stage1, version))):
        if name == "bare.pth":
            del sd[STAGE_KEY]
        stage2 = build_model(tiny_cfg(stage=2))
        tracker = {k: v.clone() for k, v in stage2.state_dict().items() if k.startswith(("tracker.", "appearance."))}
        DetectionCheckpointer(stage2).load(_write(tmp_path, sd, name))
        assert _same(stage2, stage1.state_dict(), seg) and _same(stage2, tracker, tracker)
        assert int(getattr(stage2, STAGE_KEY)) == 2 and int(getattr(stage2, TRACKER_VERSION_KEY)) == TRACKER_VERSION


def test_stage1_model_takes_an_old_stage2_checkpoint(tmp_path):
    """Stage 1 does not run the tracker (heuristic association): an old stage-2 file still evaluates its segmenter."""
    old = _old(_randomise(build_model(tiny_cfg(stage=2)), 8))
    path = _write(tmp_path, {**old, TRACKER_VERSION_KEY: torch.tensor(1)}, "s2_old.pth")
    stage1 = build_model(tiny_cfg(stage=1))
    load_weights(stage1, path)
    assert _same(stage1, old, [k for k in old if k != STAGE_KEY])
    assert int(getattr(stage1, STAGE_KEY)) == 1 and int(getattr(stage1, TRACKER_VERSION_KEY)) == TRACKER_VERSION


def test_stage1_model_evaluates_a_stage1_checkpoint_of_the_old_tracker_layout(tmp_path):
    """A stage-1 checkpoint written before the tracker change lacks the release tracker's modules and has the old
    ones: its tracker side is untrained, so a stage-1 model still loads it strictly (segmenter and every shared
    tensor from the file, the missing tracker tensors from the model's own initialisation)."""
    src = _randomise(build_model(tiny_cfg(stage=1)), 7)
    sd = _old(src)
    moved = [k for k in sd if k.startswith("tracker.gnn.")][:3]
    for k in moved:  # a tracker module the new layout lacks, and one it misses
        sd[k.replace("tracker.gnn.", "tracker.old_gnn.")] = sd.pop(k)
    path = _write(tmp_path, sd, "stage1_old.pth")
    fresh = build_model(tiny_cfg(stage=1))
    init = {k: v.clone() for k, v in fresh.state_dict().items()}
    load_weights(fresh, path)  # strict: no error
    kept = [k for k in sd if k in init and k != STAGE_KEY]
    assert any(k.startswith("detector.") for k in kept) and _same(fresh, sd, kept)
    assert _same(fresh, init, moved)
    with pytest.raises(WeightsMismatchError):  # the segmenter still has to match
        sd.pop(next(k for k in sd if k.startswith("detector.")))
        load_weights(fresh, _write(tmp_path, sd, "broken.pth"))
