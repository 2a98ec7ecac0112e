"""``benchmarks/bench_host_syncs.py --smoke`` runs and VisSTG's online step stays within 4 host syncs per frame."""

import torch

from benchmarks.bench_host_syncs import main

torch.set_num_threads(1)


def test_smoke_run_counts_at_most_4_syncs_per_frame_for_vis_stg(capsys):
    rows = main(["--smoke", "--frames", "4"])
    vis_stg = next(r for r in rows if r["model"] == "VisSTG")
    assert vis_stg["outputs"] > 0 and vis_stg["tracks"] > 0  # detections and reference instances exist
    assert vis_stg["syncs_per_frame"] <= 4, vis_stg["per_op"]
    printed = capsys.readouterr().out
    assert "VisSTG" in printed and "RGNN-VIS" in printed
