"""``experiments/holdout_sweep.py``: the grid's combinations, held-out-only evaluation jobs on the study's models,
and the table ordered by held-out AP."""

import json

from experiments.holdout_sweep import build_sweep_jobs, combinations, sweep_name, sweep_table
from experiments.synthetic_seed_study import HOLDOUT, VAL

GRID = [
    ("MODEL.VIS_STG.INFERENCE.SCORE_THRESH", ["0.1", "0.2"]),
    ("MODEL.VIS_STG.TRACK.VIDEO_SCORE", ["mean", "coverage"]),
]


def test_grid_jobs_evaluate_every_combination_on_the_held_out_split_only():
    assert len(combinations(GRID)) == 4
    assert ("MODEL.VIS_STG.INFERENCE.SCORE_THRESH", "0.2", "MODEL.VIS_STG.TRACK.VIDEO_SCORE", "mean") in combinations(
        GRID
    )
    jobs = build_sweep_jobs("stg_pred_edges", [1, 2], GRID, ["--dataset", "h=x.json:imgs"])
    assert len(jobs) == 8 and len({j.name for j in jobs}) == 8
    for j in jobs:
        assert j.args[0] == "--eval-only" and f"('{HOLDOUT}',)" in j.args and f"('{VAL}',)" not in j.args
        assert "MODEL.VIS_STG.TRACK.TRAIN_EDGE_SET" in j.args  # the training's own overrides come along
        seed = j.name[-1]
        assert j.args[j.args.index("MODEL.WEIGHTS") + 1] == f"{{out}}/stg_pred_edges_seed{seed}/model_final.pth"


def test_table_is_ordered_by_mean_held_out_ap(tmp_path):
    for opts, aps in zip(combinations(GRID), ([10.0, 12.0], [20.0, 22.0], [15.0], [])):
        for seed, ap in zip((1, 2), aps):
            d = tmp_path / sweep_name("stg_main", opts, seed) / "inference" / HOLDOUT
            d.mkdir(parents=True)
            (d / "metrics.json").write_text(json.dumps({"segm": {"AP": ap}}))
    rows = [line for line in sweep_table("stg_main", [1, 2], GRID, tmp_path).splitlines() if line.startswith("| `")]
    assert rows[0] == "| `SCORE_THRESH 0.1`, `VIDEO_SCORE coverage` | 2 | 21.0 ± 1.4 | 20.0 / 22.0 |"
    assert rows[1].startswith("| `SCORE_THRESH 0.2`, `VIDEO_SCORE mean` | 1 | 15.0 |")
    assert rows[-1].endswith("| 0 | – |  |")
