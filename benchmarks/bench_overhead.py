#!/usr/bin/env python
"""Per-frame overhead of online tracking, side by side with a per-frame peer; one table.

Rows, all at the same input size (default 360x640, R50 configs, random weights, eval mode, no grad):

- VisSTG: the full online step (``VisSTG.step``: graph + kernel warp + tracking) vs the same backbone and heads
  on F_t without graph, warp or tracking (``bench_vis_stg.plain_step``), 10 instances per frame that are the
  next frame's references (score thresholds 0, memory off, constant box sizes: see ``bench_vis_stg.py``).
- RGNN-VIS: the full online step vs the segmenter alone, measured by ``bench_vis_rgnn.bench_frames``.
- detectron2's own Mask R-CNN R50-FPN (``COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml``) per-frame
  inference, with its test score threshold at 0 and the same number of detections per image, so that its mask
  head runs on as many instances as the VisSTG rows.

The full and plain variants are timed interleaved, ``--repeats`` times (each the fastest of ``--frames``
frames); the ratio is taken per repeat and the median reported, so that load changes on a shared machine hit
both sides alike.

    python -m benchmarks.bench_overhead [--device cpu] [--threads 1] [--repeats 5] [--frames 3] [--skip-rgnn]
        [--clock cpu]   # CPU time instead of wall time: robust to other jobs sharing the cores
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, Dict, List

import torch
from detectron2 import model_zoo
from detectron2.modeling import build_model

from benchmarks import bench_vis_rgnn
from benchmarks.bench_vis_stg import build_bench_model, load_cfg, plain_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}


def fastest_ms(fn: Callable[[int], object], frames: int, device: str, clock: str = "wall") -> float:
    """Fastest of ``frames`` calls ``fn(t)`` in milliseconds (the least disturbed one on a shared machine).
    ``clock="cpu"``: the process's CPU time, which waiting for a shared core does not inflate (CPU only)."""
    now = CLOCK[clock]
    best = float("inf")
    for t in range(frames):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = now()
        fn(t)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, (now() - start) * 1e3)
    return best


def mask_rcnn(device: str, detections: int):
    cfg = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml")
    cfg.MODEL.DEVICE = device
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0  # random weights: keep `detections` instances per image
    cfg.TEST.DETECTIONS_PER_IMAGE = detections
    torch.manual_seed(0)
    return build_model(cfg).eval()


def bench_vis_stg_and_peer(args) -> Dict[str, Dict[str, float]]:
    stg_args = argparse.Namespace(
        config_file=args.vis_stg_config,
        device=args.device,
        num_classes=args.num_classes,
        instances_per_frame=args.instances_per_frame,
    )
    model = build_bench_model(load_cfg(stg_args))
    peer = mask_rcnn(args.device, args.instances_per_frame)
    h, w = args.height, args.width
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for _ in range(4)]
    state = model.init_video_state()
    counter = iter(range(10**9))

    def full(_):
        t = next(counter)
        return model.step({"image": images[t % 4], "height": h, "width": w, "frame_idx": t}, state)

    def plain(t):
        return plain_step(model, {"image": images[t % 4], "height": h, "width": w, "frame_idx": t})

    @torch.no_grad()
    def rcnn(t):
        return peer([{"image": images[t % 4], "height": h, "width": w}])

    full(0), plain(0), rcnn(0)  # warm-up (and the first frame of the video: no reference yet)
    rows = {"full": [], "plain": [], "rcnn": []}
    for _ in range(args.repeats):
        rows["plain"].append(fastest_ms(plain, args.frames, args.device, args.clock))
        rows["full"].append(fastest_ms(full, args.frames, args.device, args.clock))
        rows["rcnn"].append(fastest_ms(rcnn, args.frames, args.device, args.clock))
    ratios = sorted(f / p for f, p in zip(rows["full"], rows["plain"]))
    return {
        "vis_stg": {
            "plain": statistics.median(rows["plain"]),
            "full": statistics.median(rows["full"]),
            "ratio": statistics.median(ratios),
            "ratio_min": ratios[0],
            "ratio_max": ratios[-1],
            "ratio_fastest": min(rows["full"]) / min(rows["plain"]),
            "references": len(state.refs) if state.refs is not None else 0,
        },
        "rcnn": {"full": statistics.median(rows["rcnn"]), "fastest": min(rows["rcnn"])},
    }


def bench_rgnn(args) -> Dict[str, float]:
    """``bench_vis_rgnn.bench_frames`` on the RGNN R50 stage-2 config (its own interleaving)."""
    cfg = bench_vis_rgnn.bench_config(args.rgnn_config, args.num_classes, args.device)
    return bench_vis_rgnn.bench_frames(
        cfg, args.frames, args.repeats, torch.device(args.device), args.height, args.width
    )


def print_table(args, stg: Dict, rgnn: Dict, rcnn: Dict) -> None:
    print(
        f"\nPer-frame inference at {args.height}x{args.width}, {args.device}, {args.threads} threads, "
        f"{args.clock} clock, "
        f"random weights, {args.instances_per_frame} instances per frame; median over {args.repeats} interleaved "
        f"repeats (each the fastest of {args.frames} frames)"
    )
    print(
        "| model | without graph / tracker (ms) | full online step (ms) | ratio full / plain (median, range) "
        "| ratio of the fastest frames |"
    )
    print("|---|---:|---:|---|---:|")
    print(
        f"| VisSTG R50-FPN (plain = backbone + heads on F_t) | {stg['plain']:.1f} | {stg['full']:.1f} | "
        f"{stg['ratio']:.3f} ({stg['ratio_min']:.3f}-{stg['ratio_max']:.3f}) | {stg['ratio_fastest']:.3f} |"
    )
    if rgnn is None:
        print("| RGNN-VIS R50-FPN (plain = segmenter alone) | not measured | | | |")
    else:
        lo, hi = rgnn.get("ratio_min"), rgnn.get("ratio_max")
        rng = f" ({lo:.3f}-{hi:.3f})" if lo is not None else ""
        print(
            f"| RGNN-VIS R50-FPN (plain = segmenter alone) | {rgnn['segmenter']:.1f} | {rgnn['full']:.1f} | "
            f"{rgnn['ratio']:.3f}{rng} | - |"
        )
    print(
        f"| detectron2 Mask R-CNN R50-FPN (per-frame peer; fastest {rcnn['fastest']:.1f}) | {rcnn['full']:.1f} "
        f"| - | - | - |"
    )


def main(argv: List[str] = None) -> Dict[str, Dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--num-classes", type=int, default=40)
    parser.add_argument("--instances-per-frame", type=int, default=10)
    parser.add_argument("--vis-stg-config", default=os.path.join(ROOT, "configs/vis_stg/R50_FPN_24ep_ytvis19.yaml"))
    parser.add_argument(
        "--rgnn-config", default=os.path.join(ROOT, "configs/vis_rgnn/R50_FPN_stage2_150ep_ytvis19.yaml")
    )
    parser.add_argument("--skip-rgnn", action="store_true")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCK),
        default="wall",
        help="cpu: process CPU time (with --threads 1, robust to other jobs on the machine); the RGNN row "
        "always uses bench_vis_rgnn's own timing, which is process CPU time on CPU",
    )
    args = parser.parse_args(argv)
    if args.clock == "cpu" and args.device != "cpu":
        parser.error("--clock cpu measures CPU time: use it with --device cpu")
    torch.set_num_threads(args.threads)
    both = bench_vis_stg_and_peer(args)
    rgnn = None if args.skip_rgnn else bench_rgnn(args)
    print_table(args, both["vis_stg"], rgnn, both["rcnn"])
    return {**both, "rgnn": rgnn}


if __name__ == "__main__":
    main()
