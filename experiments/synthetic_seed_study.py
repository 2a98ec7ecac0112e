#!/usr/bin/env python
"""The multi-seed synthetic study of both methods: train every ablation that needs its own weights with each seed,
evaluate every variant on val and on a held-out split, print mean ± std tables (the 3-seed tables of the method
READMEs and docs/experiments/).

    python -m experiments.synthetic_seed_study --seeds 1 2 3 --jobs 2 [--methods vis_stg vis_rgnn] [--out DIR]
        [--trainings stg_iter1 rgnn_s2_noapp ...]   # only these trainings (+ the stage 1 they start from)

Trainings (``train_net.py``, one process per job, ``OMP_NUM_THREADS`` = cores / jobs) and evaluations
(``train_net.py --eval-only``; AP read back from the evaluator's ``metrics.json``) run as a dependency-ordered
queue; a job whose output exists is skipped, so an interrupted study resumes where it stopped. ``--table``
only prints the tables of what has finished. Per-job wall times go to ``DIR/jobs.jsonl``.

What is trained per seed (single-run differences of a few AP are noise on this 64-object val set):

- VisSTG (``configs/vis_stg/synthetic_R18.yaml``): the main model (3 GNN iterations) and the 1-iteration model.
  Edge vs embedding association, the ``iou`` baseline and "no fusion" are eval-time switches on the main weights
  (the config trains the embedding baseline jointly on detached features).
- RGNN-VIS: stage 1, stage 2 from that stage 1 (the full model), and stage 2 without the appearance model.
  GNN vs the MaskTrack R-CNN rule and learned vs average scoring are eval-time switches on the stage-2 weights.
- Then (tier 2) VisSTG trained on the paper's edge set (``TRACK.TRAIN_EDGE_SET predicted``) against the synthetic
  config's GT + predicted set, and (tier 3) VisSTG's Table-2 models that need their own training: "Offset"
  association and "Concat" fusion.

The held-out split (``DIR/holdout48``: generator seed 4242, 48 videos, made on the first run; its first 16 videos
read several AP above val, see docs/experiments/2026-12-06-synthetic-round-3.md) is the one to choose settings on;
val is the one to report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from projects.engine.metrics_file import read_segm_metrics

ROOT = Path(__file__).resolve().parents[1]
VAL = "synthetic_vis_val"
HOLDOUT = "synthetic_holdout"
METRICS = ("AP", "AP50", "AP75", "AR10")


@dataclasses.dataclass
class Job:
    name: str  # unique; also the output sub-directory
    args: List[str]  # train_net.py arguments
    done_file: str  # relative to the job's output dir: the job is done when it exists
    deps: Tuple[str, ...] = ()
    priority: Tuple[int, ...] = ()  # lower runs first among ready jobs


@dataclasses.dataclass(frozen=True)
class Variant:
    """One table row: an evaluation of one trained run with eval-time overrides."""

    method: str
    row: str
    train: str  # training job key (without the seed)
    config: str
    opts: Tuple[str, ...] = ()
    holdout: bool = True


STG = "configs/vis_stg/synthetic_R18.yaml"
S1 = "configs/vis_rgnn/synthetic_R18_stage1.yaml"
S2 = "configs/vis_rgnn/synthetic_R18_stage2.yaml"
NO_APPEARANCE = ("MODEL.RGNN.APPEARANCE.ENABLED", "False")
ITER1 = ("MODEL.VIS_STG.GRAPH.NUM_ITERS", "1")
# the paper's eq. (6) training edge set (the synthetic config trains on GT + predicted edges)
PREDICTED_EDGES = ("MODEL.VIS_STG.TRACK.TRAIN_EDGE_SET", "predicted")
# Table 2's own models: "Relation / Offset" and "Concat / Embedding" (no jointly trained baseline heads)
OFFSET = ("MODEL.VIS_STG.TRACK.ASSOCIATION", "offset", "MODEL.VIS_STG.TRACK.JOINT_EMBEDDING", "False")
CONCAT = (
    "MODEL.VIS_STG.GRAPH.FUSION_TYPE",
    "concat",
    "MODEL.VIS_STG.TRACK.ASSOCIATION",
    "embedding",
    "MODEL.VIS_STG.TRACK.JOINT_EMBEDDING",
    "False",
)

# training key -> (config, overrides, stage-1 training key it starts from or None, tier). The full models of
# every seed (tier 0) train before the ablations that need their own weights (tier 1), then the synthetic config's
# edge-set choice against the paper's (tier 2), then the Table-2 models (tier 3).
TRAININGS: Dict[str, Tuple[str, Tuple[str, ...], Optional[str], int]] = {
    "stg_main": (STG, (), None, 0),
    "rgnn_s1": (S1, (), None, 0),
    "rgnn_s2": (S2, (), "rgnn_s1", 0),
    "stg_iter1": (STG, ITER1, None, 1),
    "rgnn_s2_noapp": (S2, NO_APPEARANCE, "rgnn_s1", 1),
    "stg_pred_edges": (STG, PREDICTED_EDGES, None, 2),
    "stg_offset": (STG, OFFSET, None, 3),
    "stg_concat": (STG, CONCAT, None, 3),
}

VARIANTS: Tuple[Variant, ...] = (
    Variant("vis_stg", "VisSTG: 3 GNN iterations, edge association (full)", "stg_main", STG),
    Variant(
        "vis_stg", "association: embedding (Table 2)", "stg_main", STG, ("MODEL.VIS_STG.TRACK.ASSOCIATION", "embedding")
    ),
    Variant(
        "vis_stg",
        "baseline `iou`: plain heads, box-IoU linking",
        "stg_main",
        STG,
        ("MODEL.VIS_STG.INFERENCE.BASELINE", "iou"),
    ),
    Variant(
        "vis_stg", "no fusion at test (`GRAPH.FUSION False`)", "stg_main", STG, ("MODEL.VIS_STG.GRAPH.FUSION", "False")
    ),
    # the MLPs are shared by all iterations (eq. 1-2 carry no iteration index), so the number of iterations is
    # also an eval-time switch: what iterations 2-3 add to a model trained with 3
    Variant("vis_stg", "3-iteration weights, 1 iteration at test", "stg_main", STG, ITER1),
    Variant("vis_stg", "1 GNN iteration, edge association", "stg_iter1", STG, ITER1),
    Variant(
        "vis_stg",
        "1 GNN iteration, embedding association",
        "stg_iter1",
        STG,
        ITER1 + ("MODEL.VIS_STG.TRACK.ASSOCIATION", "embedding"),
        holdout=False,
    ),
    Variant("vis_stg", "trained on the predicted edge set only (paper eq. 6)", "stg_pred_edges", STG, PREDICTED_EDGES),
    Variant("vis_stg", 'Table 2 "Offset" association (own model)', "stg_offset", STG, OFFSET),
    Variant("vis_stg", 'Table 2 "Concat" fusion + embedding (own model)', "stg_concat", STG, CONCAT),
    Variant("vis_rgnn", "stage 1 only (heuristic + average, segmenter masks)", "rgnn_s1", S1),
    Variant("vis_rgnn", "RGNN-VIS: GNN + learned scoring (full)", "rgnn_s2", S2),
    Variant("vis_rgnn", "GNN + average scoring", "rgnn_s2", S2, ("MODEL.RGNN.SCORING", "average")),
    Variant(
        "vis_rgnn", "heuristic (MaskTrack R-CNN rule) + learned", "rgnn_s2", S2, ("MODEL.RGNN.ASSOCIATION", "heuristic")
    ),
    Variant(
        "vis_rgnn",
        "heuristic + average",
        "rgnn_s2",
        S2,
        ("MODEL.RGNN.ASSOCIATION", "heuristic", "MODEL.RGNN.SCORING", "average"),
    ),
    Variant("vis_rgnn", "no appearance model (own stage 2)", "rgnn_s2_noapp", S2, NO_APPEARANCE),
)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")[:48]


def wanted_trainings(methods: Sequence[str], trainings: Optional[Sequence[str]] = None) -> set:
    """The training keys the study runs: those of ``methods``' variants, or only ``trainings`` and what they start
    from (a stage 2 needs its stage 1)."""
    wanted = {v.train for v in VARIANTS if v.method in methods}
    if trainings is not None:
        unknown = set(trainings) - set(TRAININGS)
        if unknown:
            raise ValueError(f"unknown training(s) {sorted(unknown)}; known: {sorted(TRAININGS)}")
        chosen = set(trainings)
        chosen |= {TRAININGS[k][2] for k in trainings if TRAININGS[k][2] is not None}
        wanted &= chosen
    return wanted


def build_jobs(
    methods: Sequence[str],
    seeds: Sequence[int],
    holdout_args: List[str],
    train_opts: Sequence[str] = (),
    trainings: Optional[Sequence[str]] = None,
) -> List[Job]:
    """Training jobs (by tier, then seed, then their place in TRAININGS) and their evaluations (first when ready).
    ``trainings`` restricts the study to those training keys and the stage 1 they start from."""
    wanted = wanted_trainings(methods, trainings)
    jobs: List[Job] = []
    for order, (key, (config, opts, start_from, tier)) in enumerate(TRAININGS.items()):
        if key not in wanted:
            continue
        for seed_index, seed in enumerate(seeds):
            args = ["--config-file", config, *opts, *train_opts, "SEED", str(seed)]
            deps: Tuple[str, ...] = ()
            if start_from is not None:
                args += ["MODEL.WEIGHTS", f"{{out}}/{start_from}_seed{seed}/model_final.pth"]
                deps = (f"{start_from}_seed{seed}",)
            jobs.append(Job(f"{key}_seed{seed}", args, "model_final.pth", deps, (1, tier, seed_index, order)))
    for v in VARIANTS:
        if v.method not in methods or v.train not in wanted:
            continue
        for seed in seeds:
            train = f"{v.train}_seed{seed}"
            for dataset in (VAL, HOLDOUT) if v.holdout else (VAL,):
                extra = holdout_args if dataset == HOLDOUT else []
                args = [
                    "--eval-only",
                    "--config-file",
                    v.config,
                    *extra,
                    *v.opts,
                    "MODEL.WEIGHTS",
                    f"{{out}}/{train}/model_final.pth",
                    "DATASETS.TEST",
                    f"('{dataset}',)",
                ]
                jobs.append(Job(eval_name(v, seed, dataset), args, f"inference/{dataset}/metrics.json", (train,), (0,)))
    return jobs


def eval_name(v: Variant, seed: int, dataset: str) -> str:
    return f"eval_{v.train}_{_slug(v.row)}_seed{seed}_{'val' if dataset == VAL else 'holdout'}"


def run_queue(jobs: List[Job], out: Path, num_jobs: int) -> None:
    """Run the jobs, at most ``num_jobs`` at once, each after its dependencies; failures are reported, not fatal."""
    threads = str(max(1, (os.cpu_count() or 1) // num_jobs))
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    env.setdefault("DETECTRON2_DATASETS", str(ROOT / "datasets"))
    by_name = {j.name: j for j in jobs}
    done = {j.name for j in jobs if (out / j.name / j.done_file).exists()}
    failed: set = set()
    running: Dict[str, Tuple[subprocess.Popen, float]] = {}
    log = open(out / "jobs.jsonl", "a")
    while True:
        for name, (proc, start) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            ok = proc.returncode == 0 and (out / name / by_name[name].done_file).exists()
            (done if ok else failed).add(name)
            record = dict(job=name, rc=proc.returncode, wall_s=round(time.time() - start, 1), threads=int(threads))
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(("done   " if ok else "FAILED ") + f"{name} ({record['wall_s']} s)", flush=True)
        blocked = {j.name for j in jobs if any(d in failed for d in j.deps)} - failed
        failed |= blocked
        pending = [j for j in jobs if j.name not in done | failed and j.name not in running]
        ready = sorted((j for j in pending if all(d in done for d in j.deps)), key=lambda j: j.priority)
        while ready and len(running) < num_jobs:
            job = ready.pop(0)
            (out / job.name).mkdir(parents=True, exist_ok=True)
            args = [a.replace("{out}", str(out)) for a in job.args] + ["OUTPUT_DIR", str(out / job.name)]
            with open(out / job.name / "stdout.log", "w") as stdout:
                proc = subprocess.Popen(
                    [sys.executable, str(ROOT / "train_net.py"), *args],
                    cwd=ROOT,
                    env=env,
                    stdout=stdout,
                    stderr=subprocess.STDOUT,
                )
            running[job.name] = (proc, time.time())
            print(f"start  {job.name}", flush=True)
        if not running:
            break
        time.sleep(2)
    log.close()
    if failed:
        print(f"{len(failed)} job(s) failed or were blocked: {sorted(failed)} (see DIR/JOB/stdout.log)")


def _mean_std(values: List[float]) -> str:
    if not values:
        return "–"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    std = math.sqrt(sum((x - mean) ** 2 for x in values) / (len(values) - 1))  # sample std
    return f"{mean:.1f} ± {std:.1f}"


def tables(methods: Sequence[str], seeds: Sequence[int], out: Path) -> str:
    """Markdown: per method, one row per variant, mean ± sample std over the finished seeds (n given)."""
    lines = []
    for method in methods:
        head = ["row", "n"] + [f"val {m}" for m in METRICS] + ["held-out AP", "val AP per seed"]
        lines += [f"\n{method} (seeds {', '.join(map(str, seeds))})\n", "| " + " | ".join(head) + " |"]
        lines.append("|" + "---|" * 2 + "---:|" * (len(head) - 2))
        for v in (v for v in VARIANTS if v.method == method):
            per = {VAL: [], HOLDOUT: []}
            for seed in seeds:
                for dataset in per:
                    f = out / eval_name(v, seed, dataset) / "inference" / dataset / "metrics.json"
                    if f.exists():
                        per[dataset].append((seed, read_segm_metrics(f)))
            cells = [v.row, str(len(per[VAL]))]
            cells += [_mean_std([m[k] for _, m in per[VAL]]) for k in METRICS]
            cells.append(_mean_std([m["AP"] for _, m in per[HOLDOUT]]))
            cells.append(" / ".join(f"{m['AP']:.1f}" for _, m in per[VAL]))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def prepare_data(out: Path) -> List[str]:
    """Generate the synthetic splits once (before parallel jobs); return train_net args registering the held-out."""
    os.environ.setdefault("DETECTRON2_DATASETS", str(ROOT / "datasets"))
    from detectron2.data import DatasetCatalog

    import projects.data  # noqa: F401  (registers the synthetic splits)
    from projects.data.synthetic import DEFAULT_HEIGHT, DEFAULT_WIDTH, generate_synthetic_vis

    for name in ("synthetic_vis_train", VAL):
        DatasetCatalog.get(name)
    root = out / "holdout48"
    json_file = root / "holdout.json"  # the READMEs' held-out split: 48 videos x 16 frames, generator seed 4242
    if not json_file.exists():
        json_file = Path(generate_synthetic_vis(root, 48, 16, DEFAULT_HEIGHT, DEFAULT_WIDTH, 4242, "holdout"))
    return ["--dataset", f"{HOLDOUT}={json_file}:{root / 'holdout' / 'JPEGImages'}"]


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="+", default=["vis_stg", "vis_rgnn"], choices=["vis_stg", "vis_rgnn"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--jobs", type=int, default=2, help="processes at once")
    p.add_argument("--out", default=str(ROOT / "output" / "seed_study"))
    p.add_argument("--table", action="store_true", help="only print the tables of the finished evaluations")
    p.add_argument("--train-opts", nargs="*", default=[], help="extra KEY VALUE overrides of every training")
    p.add_argument(
        "--trainings", nargs="+", choices=sorted(TRAININGS), help="only these trainings (+ the stage 1 they start from)"
    )
    a = p.parse_args(argv)
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not a.table:
        holdout_args = prepare_data(out)
        run_queue(build_jobs(a.methods, a.seeds, holdout_args, a.train_opts, a.trainings), out, a.jobs)
    print(tables(a.methods, a.seeds, out))


if __name__ == "__main__":
    main()
