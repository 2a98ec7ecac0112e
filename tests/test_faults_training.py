"""Training survives faults (train_net.py end to end with the GT oracle, faults injected by fault_injection.py):
SIGKILL mid-training and mid-checkpoint-write then --resume, a corrupt checkpoint, bad frames, a NaN loss."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.train_cli import ROOT, cli_env, run_cli
from tests.ytvis_fixtures import write_tiny_ytvis

MAX_ITER = 48
PERIOD = 15  # checkpoints after iterations 14, 29, 44; metrics.json lines at 19, 39, 47 (writer period 20)


def _run(args, fault="", check=True):
    proc = run_cli("tests/fault_injection.py", args, FAULT=fault)
    if check and proc.returncode != 0:
        raise AssertionError(f"train_net failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def _log(proc):
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults_ytvis")
    json_file, image_root, _ = write_tiny_ytvis(str(root), num_videos=3, length=5)
    return json_file, image_root


def _args(tiny, out, *extra, name="ftiny"):
    json_file, image_root = tiny
    return [
        "--config-file",
        "configs/oracle/gt_oracle.yaml",
        "--dataset",
        f"{name}_train={json_file}:{image_root}",
        "--dataset",
        f"{name}_val={json_file}:{image_root}",
        "DATASETS.TRAIN",
        f"('{name}_train',)",
        "DATASETS.TEST",
        f"('{name}_val',)",
        "INPUT.MIN_SIZE_TRAIN",
        "(32,)",
        "INPUT.MIN_SIZE_TEST",
        "32",
        "SEED",
        "1",
        "SOLVER.MAX_ITER",
        str(MAX_ITER),
        "SOLVER.CHECKPOINT_PERIOD",
        str(PERIOD),
        "OUTPUT_DIR",
        str(out),
        *extra,
    ]


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]


def _final_state(out):
    ckpt = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    return ckpt["iteration"], ckpt["model"]["score_logit"]


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    """An uninterrupted run: its final weights are what an interrupted-and-resumed run must reach."""
    out = tmp_path_factory.mktemp("reference")
    _run(_args(tiny, out))
    return _final_state(out)


def _assert_completed_like(out, reference):
    iteration, logit = _final_state(out)
    assert iteration == MAX_ITER - 1 == reference[0]
    # the oracle's loss does not depend on the data: an exact resume (weights, momentum, LR schedule) ends at
    # the same weights as the uninterrupted run
    assert torch.allclose(logit, reference[1], atol=1e-6)
    metrics = _metrics(out)  # every line parses
    iters = [m["iteration"] for m in metrics]
    assert iters == sorted(set(iters))  # no duplicates from the re-run iterations
    assert [m["iteration"] for m in metrics if "total_loss" in m] == [19, 39, MAX_ITER - 1]
    assert not [n for n in os.listdir(out) if ".partial-" in n]


def test_sigkill_during_training_then_resume(tiny, reference, tmp_path):
    proc = _run(_args(tiny, tmp_path), fault="kill_at_iter:42", check=False)
    assert proc.returncode == -signal.SIGKILL
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000029.pth"
    assert not (tmp_path / "model_final.pth").exists()
    proc = _run(["--resume", *_args(tiny, tmp_path)])
    assert "Starting training from iteration 30" in _log(proc)
    _assert_completed_like(tmp_path, reference)


def test_external_sigkill_at_an_arbitrary_moment_then_resume(tiny, tmp_path):
    """kill -9 from outside as soon as the first checkpoint exists (mid-iteration, mid-save or mid-append)."""
    many = ["SOLVER.MAX_ITER", "200", "SOLVER.CHECKPOINT_PERIOD", "7", "DATALOADER.NUM_WORKERS", "1"]
    cmd = [sys.executable, os.path.join(ROOT, "train_net.py"), *_args(tiny, tmp_path, *many)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (tmp_path / "last_checkpoint").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(60)
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"
    assert not (tmp_path / "model_final.pth").exists()
    _run(["--resume", *_args(tiny, tmp_path, *many)])
    ckpt = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["iteration"] == 199
    iters = [m["iteration"] for m in _metrics(tmp_path)]
    assert iters == sorted(set(iters)) and 199 in iters
    assert not [n for n in os.listdir(tmp_path) if ".partial-" in n]


def test_sigkill_during_checkpoint_write_then_resume(tiny, reference, tmp_path):
    # torch.save calls: 1 = model_0000014, 2 = model_0000029 (killed half-written)
    proc = _run(_args(tiny, tmp_path), fault="kill_in_save:2", check=False)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "model_0000029.pth").exists()  # only a hidden partial file
    assert [n for n in os.listdir(tmp_path) if n.startswith(".model_0000029.pth.partial-")]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000014.pth"
    torch.load(tmp_path / "model_0000014.pth", weights_only=False)  # the previous checkpoint is intact
    # a kill inside a metrics.json append: a truncated last line
    with open(tmp_path / "metrics.json", "a") as f:
        f.write('{"iteration": 21, "loss_or')
    proc = _run(["--resume", *_args(tiny, tmp_path)])
    assert "Starting training from iteration 15" in _log(proc)
    assert "metrics.json: dropped" in _log(proc) and "truncated" in _log(proc)
    _assert_completed_like(tmp_path, reference)


def test_corrupt_checkpoint_falls_back_on_resume(tiny, reference, tmp_path):
    _run(_args(tiny, tmp_path), fault="kill_at_iter:42", check=False)
    latest = tmp_path / "model_0000029.pth"
    latest.write_bytes(latest.read_bytes()[:1000])  # e.g. a disk that filled up under an older version
    proc = _run(["--resume", *_args(tiny, tmp_path)])
    assert f"checkpoint {latest} is corrupt or incomplete" in _log(proc)
    assert "Resuming from " + str(tmp_path / "model_0000014.pth") in _log(proc)
    assert "Starting training from iteration 15" in _log(proc)
    _assert_completed_like(tmp_path, reference)


def test_nan_loss_stops_with_name_iteration_and_batch(tiny, tmp_path):
    proc = _run(_args(tiny, tmp_path), fault="nan_loss:25:loss_oracle_score", check=False)
    assert proc.returncode != 0
    line = [ln for ln in _log(proc).splitlines() if "NonFiniteLossError" in ln][-1]
    assert "non-finite loss at iteration 25: loss_oracle_score = nan" in line
    assert line.count("video ") == 2 and "frames [" in line  # IMS_PER_BATCH 2: both samples named
    # stopped before the NaN reached the weights; nothing after iteration 25 ran
    assert not (tmp_path / "model_final.pth").exists()
    assert all(m["iteration"] < 25 for m in _metrics(tmp_path) if "total_loss" in m)


def test_bad_frames_are_skipped_and_counted_across_workers_or_fail(tiny, tmp_path):
    garbage = os.path.join(tiny[1], "video2", "00002.jpg")
    missing = os.path.join(tiny[1], "video3", "00003.jpg")
    originals = {p: open(p, "rb").read() for p in (garbage, missing)}
    open(garbage, "wb").write(b"\xff\xd8 not a jpeg " * 7)
    os.remove(missing)
    try:
        # clips of all 5 frames: every sample of videos 2 and 3 reads a bad frame; 2 DataLoader workers
        clip = ["INPUT.SAMPLING_FRAME_NUM", "5", "INPUT.SAMPLING_CONSECUTIVE", "True", "DATALOADER.NUM_WORKERS", "2"]
        proc = _run(_args(tiny, tmp_path, *clip, "SOLVER.CHECKPOINT_PERIOD", "100"))
        assert f"Skipping a training sample of video 2 (frame 2): {garbage}: cannot decode frame" in _log(proc)
        assert f"Skipping a training sample of video 3 (frame 3): {missing}: frame file does not exist" in _log(proc)
        counts = [m for m in _metrics(tmp_path) if "data/skipped_samples" in m]
        assert [m["iteration"] for m in counts] == [19, 39, MAX_ITER - 1]
        totals = [m["data/skipped_samples"] for m in counts]
        # 96 samples drawn from 3 videos of which 2 are bad: the count is large and running (non-decreasing)
        assert totals == sorted(totals) and totals[-1] >= 20
        assert (tmp_path / "model_final.pth").exists()
        proc = _run(_args(tiny, tmp_path / "fail", *clip, "INPUT.ON_BAD_FRAME", "fail"), check=False)
        assert proc.returncode != 0 and (f"{garbage}: cannot decode" in _log(proc) or f"{missing}: frame" in _log(proc))
    finally:
        for p, data in originals.items():
            open(p, "wb").write(data)
