#!/usr/bin/env python
"""Learning curves: AP against training time, one line per run, from runs trained with ``TEST.EVAL_PERIOD``.

    python -m experiments.learning_curves --out curve.png --title "VisSTG" \\
        --run "LABEL" RUN_DIR SECONDS_PER_ITER [--run ...] [--point "LABEL" MINUTES AP] [--after PREV_LABEL]

Each ``--run`` reads the evaluations ``RUN_DIR/metrics.json`` holds (``segm/AP`` at each evaluated iteration) and
places iteration i at i x SECONDS_PER_ITER (the config's training cost alone on the machine, e.g. from
``python -m benchmarks.bench_train_split``), so runs trained on a busy machine are drawn at their cost, not at
their wall time. ``--offset MINUTES`` (after a run's arguments: ``--run L D S --offset 12``) shifts a run right,
e.g. a second training stage after its first. ``--point`` adds a single measured result (e.g. a multi-seed mean
of an older config).
"""

from __future__ import annotations

import argparse
import json
from typing import List, Optional, Tuple


def evaluations(run_dir: str) -> List[Tuple[int, float]]:
    """(iterations done, segm AP) of every evaluation in ``run_dir/metrics.json``, in order."""
    out = []
    with open(f"{run_dir}/metrics.json") as f:
        for line in f:
            record = json.loads(line)
            if isinstance(record.get("segm/AP"), float):
                out.append((record["iteration"] + 1, record["segm/AP"]))
    if not out:
        raise ValueError(f"{run_dir}/metrics.json holds no segm/AP evaluation (train with TEST.EVAL_PERIOD)")
    return out


def main(argv: Optional[List[str]] = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", nargs=3, action="append", default=[], metavar=("LABEL", "RUN_DIR", "SEC_PER_IT"))
    p.add_argument("--offset", type=float, action="append", default=[], help="minutes, one per --run, in order")
    p.add_argument("--point", nargs=3, action="append", default=[], metavar=("LABEL", "MINUTES", "AP"))
    p.add_argument("--budget", type=float, help="draw the time budget (minutes) as a vertical line")
    p.add_argument("--ylabel", default="AP")
    p.add_argument("--title", default="")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    offsets = a.offset + [0.0] * (len(a.run) - len(a.offset))
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    for (label, run_dir, sec_per_it), offset in zip(a.run, offsets):
        points = evaluations(run_dir)
        start = [] if offset else [(0, 0.0)]
        xs = [offset + i * float(sec_per_it) / 60 for i, _ in start + points]
        ax.plot(xs, [ap for _, ap in start + points], marker="o", label=label)
    for label, minutes, ap in a.point:
        ax.plot([float(minutes)], [float(ap)], marker="s", linestyle="none", color="black", label=label)
    if a.budget:
        ax.axvline(a.budget, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("training time alone on 2 CPU cores (min)")
    ax.set_ylabel(a.ylabel)
    ax.set_title(a.title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
