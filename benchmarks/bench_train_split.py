#!/usr/bin/env python
"""Where a training iteration's time goes: data loading, forward, backward and optimizer step.

    python -m benchmarks.bench_train_split --config-file CFG [--iters 30] [--variant LABEL "KEY VALUE ..."] \\
        [--dataset NAME=JSON:IMAGE_ROOT] [KEY VALUE ...]

Builds the model, optimizer and training loader as ``train_net.py`` does (its ``Trainer``), runs ``--iters``
iterations (the first ``--warmup`` are not counted) and prints seconds per iteration with the share of each
part. ``KEY VALUE`` overrides apply to every run; each ``--variant`` is one more run with its own overrides, and
every run after the first is also given as a ratio to the first, measured in the same invocation (compare
ratios, not absolute times, on a machine shared with other jobs). E.g. the synthetic VisSTG config against
its full-width, multi-scale predecessor::

    python -m benchmarks.bench_train_split --config-file configs/vis_stg/synthetic_R18.yaml \\
        --variant full-width "MODEL.BACKBONE.NAME build_resnet_fpn_backbone MODEL.RESNETS.STEM_OUT_CHANNELS 64 \\
        MODEL.RESNETS.RES2_OUT_CHANNELS 64 INPUT.MIN_SIZE_TRAIN (128,144,160,176,192) INPUT.MAX_SIZE_TRAIN 320"
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import torch

PARTS = ("data", "forward", "backward", "optimizer")


def measure(
    cfg_file: str, opts: Sequence[str], iters: int, warmup: int, datasets: Sequence[str] = ()
) -> Dict[str, float]:
    """Mean seconds per iteration of each part over ``iters - warmup`` training iterations. ``datasets``:
    ``NAME=JSON:IMAGE_ROOT`` registrations, as ``train_net.py --dataset``."""
    from train_net import Trainer, build_parser, setup

    registrations = [x for d in datasets for x in ("--dataset", d)]
    with tempfile.TemporaryDirectory() as out:
        argv = [*registrations, "--config-file", cfg_file, *opts, "OUTPUT_DIR", out]
        cfg = setup(build_parser().parse_args(argv))
        trainer = Trainer(cfg)
        model, optimizer, loader = trainer.model, trainer.optimizer, iter(trainer.data_loader)
        model.train()
        total = dict.fromkeys(PARTS, 0.0)
        for i in range(iters):
            t0 = time.perf_counter()
            data = next(loader)
            t1 = time.perf_counter()
            loss = sum(model(data).values())
            t2 = time.perf_counter()
            optimizer.zero_grad()
            loss.backward()
            t3 = time.perf_counter()
            optimizer.step()
            t4 = time.perf_counter()
            if i >= warmup:
                for part, seconds in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    total[part] += seconds
        del trainer, loader
    return {part: seconds / (iters - warmup) for part, seconds in total.items()}


def format_split(label: str, split: Dict[str, float], reference: Optional[float] = None) -> str:
    per_iter = sum(split.values())
    parts = "  ".join(f"{p} {split[p]:.3f} s ({100 * split[p] / per_iter:.0f} %)" for p in PARTS)
    ratio = f"  x{per_iter / reference:.2f} of the first" if reference else ""
    return f"{label}: {per_iter:.3f} s/it{ratio}  {parts}"


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--dataset", action="append", default=[], metavar="NAME=JSON:IMAGE_ROOT")
    p.add_argument("--variant", nargs=2, action="append", default=[], metavar=("LABEL", "OVERRIDES"))
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for every run, KEY VALUE ...")
    a = p.parse_args(argv)
    if a.iters <= a.warmup:
        p.error("--iters must exceed --warmup")
    runs = [("config", [])] + [(label, overrides.split()) for label, overrides in a.variant]
    print(f"{a.config_file} {' '.join(a.opts)} (torch threads: {torch.get_num_threads()})")
    reference = None
    for label, overrides in runs:
        split = measure(a.config_file, [*a.opts, *overrides], a.iters, a.warmup, a.dataset)
        print(format_split(label, split, reference), flush=True)
        reference = reference or sum(split.values())


if __name__ == "__main__":
    main()
