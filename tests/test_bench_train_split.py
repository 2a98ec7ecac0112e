"""benchmarks/bench_train_split.py: the per-part split of real training iterations, and ratios between runs."""

import os
import re
import subprocess
import sys

from benchmarks.bench_train_split import PARTS, format_split
from tests.ytvis_fixtures import write_tiny_ytvis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_format_split_shares_and_ratio():
    line = format_split("x", {"data": 0.1, "forward": 0.3, "backward": 0.5, "optimizer": 0.1}, reference=0.5)
    assert line.startswith("x: 1.000 s/it  x2.00 of the first")
    assert "forward 0.300 s (30 %)" in line and "backward 0.500 s (50 %)" in line


def test_two_runs_of_a_synthetic_config(tmp_path):
    """In a subprocess, as a user runs it (train_net's setup installs loggers that must not outlive the run)."""
    json_file, image_root, _ = write_tiny_ytvis(str(tmp_path), 2, 4, 64, 96, kind="compressed", name="train")
    proc = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.bench_train_split",
            "--config-file", "configs/vis_stg/synthetic_R18.yaml", "--iters", "3", "--warmup", "1",
            "--dataset", f"split_train={json_file}:{image_root}",
            "--variant", "one-graph-iteration", "MODEL.VIS_STG.GRAPH.NUM_ITERS 1",
            "DATASETS.TRAIN", "('split_train',)", "DATASETS.TEST", "()", "SOLVER.IMS_PER_BATCH", "1",
            "DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TRAIN", "(64,)", "MODEL.DEVICE", "cpu",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if "s/it" in line]
    assert len(lines) == 2 and lines[0].startswith("config:") and "of the first" in lines[1]
    for line in lines:
        shares = [int(x) for x in re.findall(r"\((\d+) %\)", line)]
        assert len(shares) == len(PARTS) and 97 <= sum(shares) <= 103
