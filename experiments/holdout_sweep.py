#!/usr/bin/env python
"""Choose eval-time settings on the held-out synthetic split: evaluate every combination of the given config
values on the models the seed study trained (``experiments/synthetic_seed_study.py``), print held-out AP
mean ± sample std per combination, best first. Val is never read here: report the chosen setting on val
with the study itself.

    python -m experiments.holdout_sweep --training stg_main --seeds 1 2 3 \\
        --set MODEL.VIS_STG.INFERENCE.SCORE_THRESH 0.05 0.1 0.15 0.2 \\
        --set MODEL.VIS_STG.TRACK.VIDEO_SCORE mean coverage [--jobs 2] [--out output/seed_study]

Each evaluation is a ``train_net.py --eval-only`` job in the study's queue (skipped when its metrics exist).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from experiments.synthetic_seed_study import (
    HOLDOUT,
    ROOT,
    TRAININGS,
    Job,
    _mean_std,
    _slug,
    prepare_data,
    run_queue,
)
from projects.engine.metrics_file import read_segm_metrics

Grid = List[Tuple[str, List[str]]]


def combinations(grid: Grid) -> List[Tuple[str, ...]]:
    """Every combination of the grid's values as a flat KEY VALUE ... override tuple."""
    keys = [k for k, _ in grid]
    return [tuple(x for kv in zip(keys, values) for x in kv) for values in itertools.product(*(v for _, v in grid))]


def sweep_name(training: str, opts: Sequence[str], seed: int) -> str:
    setting = "_".join(f"{k.split('.')[-1]}_{v}" for k, v in zip(opts[::2], opts[1::2]))
    return f"sweep_{training}_{_slug(setting)}_seed{seed}"


def build_sweep_jobs(training: str, seeds: Sequence[int], grid: Grid, holdout_args: List[str]) -> List[Job]:
    config, train_opts, _, _ = TRAININGS[training]
    jobs = []
    for opts in combinations(grid):
        for seed in seeds:
            args = ["--eval-only", "--config-file", config, *holdout_args, *train_opts, *opts]
            args += [
                "MODEL.WEIGHTS",
                f"{{out}}/{training}_seed{seed}/model_final.pth",
                "DATASETS.TEST",
                f"('{HOLDOUT}',)",
            ]
            jobs.append(Job(sweep_name(training, opts, seed), args, f"inference/{HOLDOUT}/metrics.json", (), (0,)))
    return jobs


def sweep_table(training: str, seeds: Sequence[int], grid: Grid, out: Path) -> str:
    """Markdown rows: setting, n, held-out AP mean ± std, per seed; best mean first (missing runs last)."""
    rows = []
    for opts in combinations(grid):
        aps = []
        for seed in seeds:
            f = out / sweep_name(training, opts, seed) / "inference" / HOLDOUT / "metrics.json"
            if f.exists():
                aps.append(read_segm_metrics(f)["AP"])
        setting = ", ".join(f"`{k.split('.')[-1]} {v}`" for k, v in zip(opts[::2], opts[1::2]))
        mean = sum(aps) / len(aps) if aps else float("-inf")
        rows.append((mean, f"| {setting} | {len(aps)} | {_mean_std(aps)} | {' / '.join(f'{a:.1f}' for a in aps)} |"))
    rows.sort(key=lambda r: -r[0])
    head = [f"\n{training}: held-out AP (seeds {', '.join(map(str, seeds))})\n", "| setting | n | AP | per seed |"]
    return "\n".join(head + ["|---|---:|---:|---|"] + [r for _, r in rows])


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--training", required=True, choices=sorted(TRAININGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--set", nargs="+", action="append", required=True, metavar=("KEY", "VALUE"))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "output" / "seed_study"))
    p.add_argument("--table", action="store_true", help="only print the table of the finished evaluations")
    a = p.parse_args(argv)
    if any(len(s) < 2 for s in a.set):
        p.error("--set takes a config key and at least one value")
    grid = [(s[0], s[1:]) for s in a.set]
    out = Path(a.out).resolve()
    missing = [s for s in a.seeds if not (out / f"{a.training}_seed{s}" / "model_final.pth").exists()]
    if missing and not a.table:
        p.error(f"no trained {a.training} model for seed(s) {missing} under {out}: run the seed study first")
    if not a.table:
        run_queue(build_sweep_jobs(a.training, a.seeds, grid, prepare_data(out)), out, a.jobs)
    print(sweep_table(a.training, a.seeds, grid, out))


if __name__ == "__main__":
    main()
