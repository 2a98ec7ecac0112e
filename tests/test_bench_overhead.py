"""``benchmarks/bench_overhead.py`` runs end to end on tiny inputs (the R50 numbers are a benchmark, not a test)."""

import os

import torch

from benchmarks.bench_overhead import main

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_overhead_table_runs_on_tiny_inputs(capsys):
    out = main(
        [
            "--vis-stg-config",
            os.path.join(ROOT, "configs/vis_stg/synthetic_R18.yaml"),
            "--height",
            "64",
            "--width",
            "96",
            "--repeats",
            "2",
            "--frames",
            "1",
            "--num-classes",
            "4",
            "--instances-per-frame",
            "3",
            "--skip-rgnn",
        ]
    )
    stg = out["vis_stg"]
    assert stg["plain"] > 0 and stg["full"] > 0 and stg["ratio_min"] <= stg["ratio"] <= stg["ratio_max"]
    assert stg["references"] == 3 and out["rcnn"]["full"] > 0
    table = capsys.readouterr().out
    assert "VisSTG" in table and "Mask R-CNN" in table and "RGNN-VIS" in table
