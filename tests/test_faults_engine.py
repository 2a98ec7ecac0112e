"""Unit tests of projects/engine (atomic writes, checkpoint fallback, metrics.json repair, loss guard) and of the
training mapper's INPUT.ON_BAD_FRAME handling."""

import json
import logging
import os

import pytest
import torch
from detectron2.config import get_cfg
from torch import nn

from projects.config import add_video_config
from projects.data import DatasetFormatError, VideoDatasetMapper, load_ytvis_json
from projects.engine import (
    AtomicWritePathManager,
    CorruptCheckpointError,
    FaultTolerantCheckpointer,
    NonFiniteLossError,
    atomic_open,
    atomic_write,
    check_losses_finite,
    remove_stale_partials,
    truncate_metrics_for_resume,
)
from tests.ytvis_fixtures import write_tiny_ytvis


def test_atomic_open_keeps_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "results.json"
    atomic_write(str(path), "old")
    os.chmod(path, 0o640)
    with pytest.raises(RuntimeError):
        with atomic_open(str(path), "w") as f:
            f.write("new but incomplete")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["results.json"]
    with atomic_open(str(path), "w") as f:
        f.write("new")
    assert path.read_text() == "new" and (os.stat(path).st_mode & 0o777) == 0o640  # permissions kept
    with pytest.raises(ValueError, match="modes"):
        with atomic_open(str(path), "a"):
            pass


def test_remove_stale_partials_only_removes_partial_files(tmp_path):
    (tmp_path / ".model_0000009.pth.partial-ab_12").write_bytes(b"half")
    (tmp_path / "model_0000004.pth").write_bytes(b"x")
    (tmp_path / ".hidden").write_bytes(b"x")
    assert remove_stale_partials(str(tmp_path)) == [str(tmp_path / ".model_0000009.pth.partial-ab_12")]
    assert sorted(os.listdir(tmp_path)) == [".hidden", "model_0000004.pth"]


def test_path_manager_wrapper_writes_atomically_and_delegates(tmp_path):
    from detectron2.utils.file_io import PathManager

    pm = AtomicWritePathManager(PathManager)
    with pytest.raises(KeyError):
        with pm.open(str(tmp_path / "last_checkpoint"), "w") as f:
            f.write("model_0000001.pth")
            raise KeyError("interrupted")
    assert not pm.exists(str(tmp_path / "last_checkpoint"))
    with pm.open(str(tmp_path / "last_checkpoint"), "w") as f:
        f.write("model_0000001.pth")
    with pm.open(str(tmp_path / "last_checkpoint"), "r") as f:
        assert f.read() == "model_0000001.pth"


class _State:
    def __init__(self):
        self.iteration = -1

    def state_dict(self):
        return {"iteration": self.iteration}

    def load_state_dict(self, sd):
        self.iteration = sd["iteration"]


def _checkpointer(tmp_path, value=0.0):
    model = nn.Linear(2, 1)
    nn.init.constant_(model.weight, value)
    state = _State()
    return FaultTolerantCheckpointer(model, str(tmp_path), save_to_disk=True, trainer=state), model, state


def _save_series(tmp_path, iterations):
    ckpt, model, state = _checkpointer(tmp_path)
    for it in iterations:
        nn.init.constant_(model.weight, float(it))
        state.iteration = it
        ckpt.save(f"model_{it:07d}")
    return ckpt


def test_corrupt_checkpoint_is_named_and_resume_falls_back(tmp_path, caplog):
    _save_series(tmp_path, [4, 9, 14])
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000014.pth"
    newest = tmp_path / "model_0000014.pth"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    (tmp_path / "model_0000009.pth").write_bytes(b"")  # an empty file is corrupt too
    ckpt, model, state = _checkpointer(tmp_path, value=-1.0)
    with pytest.raises(CorruptCheckpointError, match=f"checkpoint {newest} is corrupt or incomplete"):
        ckpt.resume_or_load(str(newest), resume=False)  # loading it explicitly (MODEL.WEIGHTS) is an error
    with caplog.at_level(logging.WARNING, logger="projects.engine.checkpoint"):
        ckpt.resume_or_load("", resume=True)
    assert state.iteration == 4 and float(model.weight.detach()[0, 0]) == 4.0
    assert "model_0000014.pth is corrupt" in caplog.text and "model_0000009.pth is corrupt" in caplog.text
    assert "the file is empty" in caplog.text and "Resuming from" in caplog.text
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"  # re-tagged


def test_resume_with_no_complete_checkpoint_fails_naming_the_directory(tmp_path):
    _save_series(tmp_path, [4])
    (tmp_path / "model_0000004.pth").write_bytes(b"PK\x03\x04 garbage")
    ckpt, _, _ = _checkpointer(tmp_path)
    with pytest.raises(CorruptCheckpointError, match="no complete checkpoint to resume from"):
        ckpt.resume_or_load("", resume=True)


def test_last_checkpoint_naming_a_missing_file_falls_back_to_the_newest(tmp_path):
    _save_series(tmp_path, [4, 9])
    (tmp_path / "last_checkpoint").write_text("model_final.pth")  # deleted by a user
    ckpt, model, state = _checkpointer(tmp_path)
    ckpt.resume_or_load("", resume=True)
    assert state.iteration == 9


def _write_lines(path, lines):
    path.write_text("".join(lines))


def test_metrics_truncation_drops_rerun_iterations_and_a_truncated_line(tmp_path, caplog):
    path = tmp_path / "metrics.json"
    rec = [json.dumps({"iteration": i, "total_loss": 1.0}) + "\n" for i in (19, 39, 59)]
    _write_lines(path, rec + ['{"iteration": 79, "total_lo'])
    with caplog.at_level(logging.INFO, logger="projects.engine.metrics_file"):
        assert truncate_metrics_for_resume(str(path), 40) == (2, 2)
    assert path.read_text() == "".join(rec[:2])
    assert "line 4 is truncated" in caplog.text
    assert truncate_metrics_for_resume(str(path), 40) == (2, 0)  # idempotent
    _write_lines(path, rec + ["not json\n"] + rec[2:])
    assert truncate_metrics_for_resume(str(path), 1000) == (3, 2)  # an unparsable line cuts the rest
    assert truncate_metrics_for_resume(str(tmp_path / "absent.json"), 5) == (0, 0)


def test_metrics_truncation_keeps_writing_through_an_open_append_handle(tmp_path):
    path = tmp_path / "metrics.json"
    _write_lines(path, ['{"iteration": 1}\n', '{"iteration": 3}\n'])
    with open(path, "a") as handle:  # detectron2's JSONWriter opens the file before the resume
        truncate_metrics_for_resume(str(path), 2)
        handle.write('{"iteration": 2}\n')
    assert path.read_text() == '{"iteration": 1}\n{"iteration": 2}\n'


def test_check_losses_finite_names_every_bad_loss_and_the_batch():
    batch = [{"video_id": 7, "frame_idx": [3, 5]}, {"video_id": 2, "frame_idx": [0, 1]}]
    check_losses_finite({"loss_a": torch.tensor(1.0), "loss_b": torch.tensor(0.5)}, 3, batch)
    with pytest.raises(NonFiniteLossError) as e:
        check_losses_finite(
            {"loss_a": torch.tensor(1.0), "loss_b": torch.tensor(float("inf")), "loss_c": torch.tensor(float("nan"))},
            41,
            batch,
        )
    msg = str(e.value)
    assert "iteration 41" in msg and "loss_b = inf" in msg and "loss_c = nan" in msg and "loss_a" not in msg
    assert "video 7 frames [3, 5]; video 2 frames [0, 1]" in msg
    assert isinstance(e.value, FloatingPointError)


def _mapper(on_bad_frame):
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.INPUT.MIN_SIZE_TRAIN = (32,)
    cfg.INPUT.ON_BAD_FRAME = on_bad_frame
    cfg.INPUT.SAMPLING_FRAME_NUM, cfg.INPUT.SAMPLING_CONSECUTIVE = 3, True  # every sample reads all 3 frames
    return VideoDatasetMapper(cfg, True)


def test_mapper_skips_a_bad_frame_and_reports_it_in_the_next_sample(tmp_path, caplog):
    json_file, image_root, _ = write_tiny_ytvis(str(tmp_path), num_videos=2, length=3, null_frame=None)
    good, bad = load_ytvis_json(json_file, image_root)
    bad["file_names"][1] = bad["file_names"][1] + ".missing"
    mapper = _mapper("skip")
    with caplog.at_level(logging.WARNING, logger="projects.data.video_mapper"):
        assert mapper(bad) is None and mapper(bad) is None
    assert caplog.text.count("Skipping a training sample of video 2 (frame 1)") == 1  # warned once per file
    assert "frame file does not exist" in caplog.text
    assert mapper(good)["skipped_samples"] == 2
    assert mapper(good)["skipped_samples"] == 0
    with pytest.raises(DatasetFormatError, match=r"\.missing: frame file does not exist"):
        _mapper("fail")(bad)
    with pytest.raises(ValueError, match="INPUT.ON_BAD_FRAME must be one of"):
        _mapper("ignore")


def test_a_truncated_jpeg_is_a_bad_frame_not_a_grey_image(tmp_path):
    json_file, image_root, _ = write_tiny_ytvis(str(tmp_path), num_videos=1, length=3, null_frame=None)
    (video,) = load_ytvis_json(json_file, image_root)
    data = open(video["file_names"][2], "rb").read()
    open(video["file_names"][2], "wb").write(data[: len(data) // 2])  # an interrupted download / copy
    with pytest.raises(DatasetFormatError, match="00002.jpg: cannot decode frame .*[Tt]runcated"):
        _mapper("fail")(video)
    mapper = _mapper("skip")
    assert mapper(video) is None and mapper._skipped == 1
