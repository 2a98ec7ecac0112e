#!/usr/bin/env python
"""VisSTG: the degree of the graph's target-pixel nodes in training vs online test, and what it does to F̂_t.

    python -m experiments.vis_stg_graph_degree --config-file CFG MODEL.WEIGHTS W [--train-batches 8] [--videos 4] \\
        [--dataset NAME=JSON:IMAGE_ROOT] [KEY VALUE ...]

Why: eq. (2) sums the messages of a pixel node's edges, so F̂_t - F_t grows with the node's degree (the number
of reference windows covering the pixel). In training the references are frame k's GT objects; online they are
frame t-1's detections plus the memory, many more per object, so the sum sees degrees at test time that it never
saw in training (docs/experiments/2026-12-06-vis_stg-aggregation-degree.md; vis_stg/README.md "Aggregation").

What: builds the model of ``CFG`` (``MODEL.WEIGHTS ""`` on purpose: random weights), runs ``--videos`` videos of
``DATASETS.TEST[0]`` online (first: a training-mode forward may update BatchNorm statistics), then
``--train-batches`` training batches (``model.train()`` forward, no backward), all under ``torch.no_grad()``. A
forward hook on the model's :class:`vis_stg.graph.GraphUpdate` records at every graph update, for each pixel node
with an edge: its degree, counted as ``GraphUpdate.forward`` counts it (masked edges excluded), and per pixel
|F̂_t| / |F_t| and |F̂_t - F_t| / |F_t| (L2 over channels) under the model's own aggregation and under ``sum`` and
``mean``, the same ``forward`` re-run on the same inputs and weights with ``aggregation`` swapped. Prints the
degree statistics and the mean ratios per degree bin, training vs test.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import itertools
import logging
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng

import projects.data  # noqa: F401  (registers the builtin datasets)
from experiments.annotated_split_runs import experiment_cfg
from projects.data.build import build_video_test_loader, build_video_train_loader
from projects.engine import load_weights
from vis_stg.graph import GraphUpdate, aggregation_rows

BINS = (("1", 1, 1), ("2", 2, 2), ("3-4", 3, 4), ("5-8", 5, 8), ("9-16", 9, 16), (">16", 17, np.inf))
PHASES = ("train", "test")
DEGREE_STATS = {  # percentiles: observed degrees (no interpolation)
    "mean": np.mean,
    "p50": lambda d: np.percentile(d, 50, method="higher"),
    "p99": lambda d: np.percentile(d, 99, method="higher"),
    "max": np.max,
    "share_gt1": lambda d: (d > 1).mean(),
}
_FORWARD = inspect.signature(GraphUpdate.forward)
logger = logging.getLogger(__name__)


def pixel_degree(num_pix: int, dst: torch.Tensor, edge_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(M,) edges of each pixel node, counted by ``GraphUpdate``'s own :func:`~vis_stg.graph.aggregation_rows`.
    ``dst`` (E,) pixel index of each edge, ``edge_mask`` (E,) bool or None."""
    _, degree = aggregation_rows(dst, num_pix, edge_mask, torch.ones(0, device=dst.device))
    return degree[:-1, 0].long()


class DegreeRecorder:
    """Context manager: a forward hook on ``update`` recording, at every call, the degree of the pixel nodes that
    have an edge and their |F̂_t| / |F_t| ("ratio") and |F̂_t - F_t| / |F_t| ("message") under each aggregation
    of ``aggregations`` (default: the module's own, "sum", "mean"); set ``phase`` before each part of the run.
    ``records[phase]``: one dict per call, ``degree`` (M',) and ``ratio`` / ``message``: {aggregation: (M',)}."""

    def __init__(self, update: GraphUpdate, aggregations: Optional[Sequence[str]] = None):
        self.update, self.phase = update, PHASES[0]
        self.aggregations = list(dict.fromkeys(aggregations or (update.aggregation, "sum", "mean")))
        for agg in self.aggregations:
            if agg != update.aggregation and agg not in ("sum", "mean"):
                raise ValueError(
                    f"can swap the aggregation to 'sum' or 'mean' only (no SUM_SCALE to reuse), got {agg!r}"
                )
        self.records: Dict[str, List[Dict]] = {p: [] for p in PHASES}

    def __enter__(self) -> DegreeRecorder:
        self._handle = self.update.register_forward_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()

    def _hook(self, module: GraphUpdate, args, kwargs, output) -> None:
        inputs = _FORWARD.bind(module, *args, **kwargs)
        inputs.apply_defaults()
        inputs = {k: v for k, v in inputs.arguments.items() if k != "self"}
        h_pix = inputs["h_pix"].float()
        degree = pixel_degree(h_pix.shape[0], inputs["dst"], inputs["edge_mask"])
        touched = degree > 0
        norm = h_pix.norm(dim=1)
        nan = torch.full_like(norm, float("nan"))
        record = {"degree": degree[touched].cpu().numpy(), "ratio": {}, "message": {}}
        for agg in self.aggregations:
            variant = module
            if agg != module.aggregation:  # same weights, other aggregation (a shallow copy shares the parameters)
                variant = copy.copy(module)
                variant.aggregation = agg
            out = output[1] if variant is module else GraphUpdate.forward(variant, **inputs)[1]
            for key, value in (("ratio", out.float()), ("message", out.float() - h_pix)):
                ratio = torch.where(norm > 0, value.norm(dim=1) / norm, nan)  # |F_t| = 0: no ratio
                record[key][agg] = ratio[touched].cpu().numpy()
        self.records[self.phase].append(record)


def summarise(records: Dict[str, List[Dict]]) -> Dict[str, Dict]:
    """Per phase: ``updates``, ``pixels``, degree ``mean``/``p50``/``p99``/``max``/``share_gt1`` and ``bins``:
    {bin label: {"pixels": n, "ratio": {agg: mean}, "message": {agg: mean}}} (NaN where there is nothing)."""
    out = {}
    for phase, recs in records.items():
        deg = np.concatenate([r["degree"] for r in recs]) if recs else np.zeros(0, np.int64)
        aggs = list(recs[0]["ratio"]) if recs else []
        s = {"updates": len(recs), "pixels": len(deg), "bins": {}}
        for key, fn in DEGREE_STATS.items():
            s[key] = float(fn(deg)) if len(deg) else float("nan")
        values = {key: {a: np.concatenate([r[key][a] for r in recs]) for a in aggs} for key in ("ratio", "message")}
        for label, lo, hi in BINS:
            sel = (deg >= lo) & (deg <= hi)
            s["bins"][label] = {"pixels": int(sel.sum())}
            for key in ("ratio", "message"):
                s["bins"][label][key] = {
                    a: float(np.nanmean(v[sel])) if np.isfinite(v[sel]).any() else float("nan")
                    for a, v in values[key].items()
                }
        out[phase] = s
    return out


def measure(model, train_batches: Iterable, test_batches: Iterable, aggregations=None) -> Tuple[Dict, Dict]:
    """Run ``test_batches`` (the test loader's one-video lists) online, then ``train_batches`` in training mode,
    under ``torch.no_grad()`` with a :class:`DegreeRecorder` on the model's graph. Returns (:func:`summarise` of
    the records, the records)."""
    if getattr(model, "graph", None) is None:
        raise ValueError(
            "the model has no spatial-temporal graph (GRAPH.FUSION, TRACK.ASSOCIATION): nothing to measure"
        )
    if not any(p.any() for p in model.graph.update.node_mlp[-1].parameters()):
        logger.warning("N_v's output layer is zero (its initialisation): F̂_t = F_t under any aggregation")
    with DegreeRecorder(model.graph.update, aggregations) as recorder, torch.no_grad():
        recorder.phase = "test"
        model.eval()
        for batch in test_batches:
            model(batch)
        recorder.phase = "train"
        model.train()
        for batch in train_batches:
            model(batch)
    return summarise(recorder.records), recorder.records


def format_tables(stats: Dict[str, Dict]) -> str:
    lines = [
        "| phase | graph updates | pixel nodes | degree mean | p50 | p99 | max | share > 1 |",
        "|---" + "|---:" * 7 + "|",
    ]
    for p in PHASES:
        s = stats[p]
        lines.append(
            f"| {p} | {s['updates']} | {s['pixels']} | {s['mean']:.2f} | {s['p50']:.0f} | {s['p99']:.0f} "
            f"| {s['max']:.0f} | {100 * s['share_gt1']:.0f} % |"
        )
    aggs = list(stats["test"]["bins"]["1"]["ratio"] or stats["train"]["bins"]["1"]["ratio"])
    lines += ["", "Mean |F̂_t| / |F_t| (mean |F̂_t - F_t| / |F_t|) per degree bin:", ""]
    lines.append(
        "| degree | " + " | ".join(f"{p} pixels | " + " | ".join(f"{p} {a}" for a in aggs) for p in PHASES) + " |"
    )
    lines.append("|---" + "|---:" * (len(PHASES) * (1 + len(aggs))) + "|")
    for label, _, _ in BINS:
        cells = []
        for p in PHASES:
            b = stats[p]["bins"][label]
            cells.append(str(b["pixels"]))
            cells += [f"{b['ratio'].get(a, np.nan):.2f} ({b['message'].get(a, np.nan):.2f})" for a in aggs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def setup(argv: Optional[Sequence[str]] = None):
    """Parse the command line; return (cfg, model with its weights, train batches, test batches) iterables."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--train-batches", type=int, default=8)
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--dataset", action="append", default=[], metavar="NAME=JSON:IMAGE_ROOT")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, e.g. MODEL.WEIGHTS path")
    a = p.parse_args(argv)
    cfg = experiment_cfg(a.config_file, a.opts, a.dataset)
    if not cfg.MODEL.WEIGHTS and "MODEL.WEIGHTS" not in a.opts[0::2]:
        p.error('give MODEL.WEIGHTS (a trained checkpoint; MODEL.WEIGHTS "" for random weights on purpose)')
    if not cfg.DATASETS.TEST:
        p.error("DATASETS.TEST is empty: no videos to run online")
    seed_all_rng(max(cfg.SEED, 0))
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        load_weights(model, cfg.MODEL.WEIGHTS)
    else:
        logger.warning('MODEL.WEIGHTS "": measuring an untrained model')
    train = itertools.islice(build_video_train_loader(cfg), a.train_batches)
    test = itertools.islice(build_video_test_loader(cfg, cfg.DATASETS.TEST[0]), a.videos)
    return cfg, model, train, test


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict]:
    cfg, model, train, test = setup(argv)
    stats, _ = measure(model, train, test)
    print(f"{cfg.MODEL.WEIGHTS or 'random weights'}, GRAPH.AGGREGATION {model.graph.update.aggregation}, "
          f"train {cfg.DATASETS.TRAIN} vs test {cfg.DATASETS.TEST[0]}\n")  # fmt: skip
    print(format_tables(stats))
    return stats


if __name__ == "__main__":
    main()
