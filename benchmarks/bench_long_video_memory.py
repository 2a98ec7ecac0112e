#!/usr/bin/env python
"""Memory of ``train_net.py --eval-only`` on one long video: resident set size (RSS) at frames 300 and 3,000.

    python -m benchmarks.bench_long_video_memory --frames 3000 --height 64 --width 96
    python -m benchmarks.bench_long_video_memory --model VideoGTOracle      # data + accumulation + evaluator only

A synthetic video of ``--frames`` JPEG frames (small, so the run takes minutes on a CPU) is registered as a
YouTube-VIS dataset and evaluated exactly as ``--eval-only`` does (``Trainer.test``: the test loader with
``LazyVideoFrames``, ``run_online_inference``, ``YTVISEvaluator``). The model's ``step`` is wrapped to sample RSS
at the given frames. VisSTG runs with random weights and ``SCORE_THRESH`` 0 (memory does not depend on what the
weights are, but on how many tracks are reported: every frame has detections here, a worst case). Flat memory:
RSS at frame 3,000 minus RSS at frame 300 is small next to what 3,000 decoded frames would take.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time

import psutil
import torch

from projects.data import register_ytvis_instances
from projects.data.synthetic import generate_synthetic_vis


def rss_mib() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=3000)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--sample-at", type=int, nargs="+", default=[30, 300, 1000, 2000, 3000])
    p.add_argument("--model", default="VisSTG", help="VisSTG (random weights) or VideoGTOracle")
    p.add_argument("--config-file", default="configs/vis_stg/synthetic_R18.yaml")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    args = p.parse_args()
    torch.set_num_threads(1)
    from train_net import Trainer, get_project_cfg

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        json_file = generate_synthetic_vis(tmp, 1, args.frames, args.height, args.width, seed=0, split_name="long")
        print(f"wrote a {args.frames}-frame {args.width}x{args.height} video in {time.perf_counter() - t0:.0f} s")
        register_ytvis_instances("long_video", json_file, os.path.join(tmp, "long", "JPEGImages"))
        cfg = get_project_cfg()
        cfg.merge_from_file(args.config_file)
        size = min(args.height, args.width)
        cfg.merge_from_list(
            [
                "MODEL.META_ARCHITECTURE",
                args.model,
                "DATASETS.TRAIN",
                "()",
                "DATASETS.TEST",
                "('long_video',)",
                "MODEL.NUM_CLASSES",
                "-1",
                "INPUT.MIN_SIZE_TEST",
                str(size),
                "INPUT.MAX_SIZE_TEST",
                str(max(args.height, args.width)),
                "MODEL.VIS_STG.INFERENCE.SCORE_THRESH",
                "0.0",
                "DATALOADER.NUM_WORKERS",
                "0",
                "OUTPUT_DIR",
                tmp,
                *args.opts,
            ]
        )
        from projects.data import resolve_num_classes

        resolve_num_classes(cfg)
        cfg.freeze()
        model = Trainer.build_model(cfg).eval()
        samples = {}
        wanted = set(args.sample_at)
        step = getattr(model, "step", None)
        if step is not None:

            def sampled_step(frame, state):
                out = step(frame, state)
                if frame["frame_idx"] + 1 in wanted:
                    samples[frame["frame_idx"] + 1] = rss_mib()
                return out

            model.step = sampled_step
        before = rss_mib()
        t0 = time.perf_counter()
        Trainer.test(cfg, model)
        elapsed = time.perf_counter() - t0
        after = rss_mib()
    frame_mib = args.height * args.width * 3 / 2**20
    print(
        f"\n{args.model}, {args.frames} frames of {args.width}x{args.height} ({elapsed:.0f} s, "
        f"{args.frames / elapsed:.1f} FPS); all decoded frames would take {frame_mib * args.frames:.0f} MiB"
    )
    print(f"{'frame':>8} | {'RSS MiB':>8}")
    print(f"{'start':>8} | {before:8.1f}")
    for t in sorted(samples):
        print(f"{t:>8} | {samples[t]:8.1f}")
    print(f"{'end':>8} | {after:8.1f}   (after evaluation and results.json)")
    if 300 in samples and args.frames in samples:
        print(f"growth frame 300 -> {args.frames}: {samples[args.frames] - samples[300]:+.1f} MiB")


if __name__ == "__main__":
    main()
