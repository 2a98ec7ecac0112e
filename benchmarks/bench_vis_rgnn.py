#!/usr/bin/env python
"""RGNN-VIS speed benchmark (CPU by default); prints two tables.

1. Per-frame time of the segmenter alone (preprocess + backbone + YOLACT) vs the whole online step (segmenter +
   appearance network + tracker + mask re-weighting/pasting + the output copy to the host) at 360x640, and their
   ratio (median over interleaved repeats).
2. Tracker step time vs number of tracks x detections (10x10, 50x50, 100x100): the GNN alone on the library's
   fixed-size padded tensors, the same GNN on edge lists reduced with ``projects.graph.scatter_sum`` (the test
   oracle ``tests/rgnn_references.scatter_gnn``), and the full tracker step.
3. The mask re-weighting CNN (Table 3) for ``MAX_DETECTIONS`` tracks on the prototype grid of table 1's frame:
   ``MaskReweighting.forward`` vs the plain 18-channel convolution (``tests/rgnn_references``), and their
   difference as a share of table 1's full step.

    python -m benchmarks.bench_vis_rgnn [--config-file configs/vis_rgnn/R50_FPN_stage2_150ep_ytvis19.yaml]
        [--frames 3] [--frame-repeats 7] [--threads 1] [--device cpu] [--skip-tracker] [--skip-frames]

On CPU the times are process CPU time (robust to other processes sharing the cores; use ``--threads 1``).
Weights are random (speed does not depend on them); detection thresholds are lowered so that every frame
carries the maximum number of detections (``MODEL.RGNN.DETECTOR.MAX_DETECTIONS``) into the tracker.
"""

import argparse
import functools
import os
import statistics
import time
from typing import Callable, Dict

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from projects.config import add_video_config
from projects.graph import HAS_TORCH_SCATTER
from tests.rgnn_references import plain_mask_reweighting, scatter_gnn
from vis_rgnn import add_rgnn_config
from vis_rgnn.graph_inputs import graph_inputs
from vis_rgnn.track_state import FrameDetections
from vis_rgnn.tracker import RGNNTracker


def timed(fn: Callable[[], object], repeats: int, warmup: int, device: torch.device) -> float:
    """Best (minimum) time of ``fn`` in milliseconds: the least disturbed run on a shared machine. On CPU this is
    the process's CPU time (``time.process_time``; with ``--threads 1`` it excludes the time other processes
    hold the cores), on CUDA wall time between synchronisations."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((clock() - start) * 1e3)
    return min(times)


def bench_config(config_file: str, num_classes: int, device: str):
    """The RGNN-VIS config with random weights and thresholds at which every anchor is a detection and every
    detection starts or continues a track (the maximum per-frame work)."""
    cfg = get_cfg()
    add_video_config(cfg)
    add_rgnn_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.MODEL.NUM_CLASSES = num_classes
    cfg.MODEL.DEVICE = device
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RGNN.DETECTOR.SCORE_LOGIT_THRESH = -50.0
    cfg.MODEL.RGNN.INIT_THRESHOLD = cfg.MODEL.RGNN.INACTIVE_THRESHOLD = -50.0
    return cfg


def bench_frames(
    cfg, frames: int, repeats: int, device: torch.device, height: int = 360, width: int = 640
) -> Dict[str, float]:
    """Segmenter alone vs the full online step on a ``height`` x ``width`` frame. Each repeat alternates the
    two, frame by frame, ``frames`` times and keeps the fastest of each (the least disturbed on a shared
    machine); the ratio is taken per repeat and its median over ``repeats`` reported."""
    model = build_model(cfg).eval()
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    frame = {"image": image, "height": height, "width": width, "frame_idx": 0}

    @torch.no_grad()
    def segmenter():
        images = model.preprocess([image])
        fpn, _ = model.extract_features(images)
        return model.detector(fpn, images.image_sizes)

    state = model.init_video_state()
    step = functools.partial(model.step, frame, state)
    grid = tuple(segmenter()[0].pred_masks.shape[-2:])  # warm-up; the prototype grid of the frame
    for fn in (step, step):  # warm-up; the step's tracks fill up
        fn()
    seg, full, ratios = [], [], []
    for _ in range(repeats):
        pairs = [(timed(segmenter, 1, 0, device), timed(step, 1, 0, device)) for _ in range(frames)]
        seg.append(min(p[0] for p in pairs))
        full.append(min(p[1] for p in pairs))
        ratios.append(full[-1] / seg[-1])
    ratios.sort()
    return {
        "segmenter": statistics.median(seg),
        "full": statistics.median(full),
        "ratio": statistics.median(ratios),
        "ratio_min": ratios[0],
        "ratio_max": ratios[-1],
        "repeats": repeats,
        "tracks": int(state["tracks"].alive.sum()),
        "grid": grid,
    }


def bench_tracker(cfg, n: int, m: int, repeats: int, device: torch.device) -> Dict[str, float]:
    torch.manual_seed(0)
    app_dim = 2 * cfg.MODEL.RGNN.APPEARANCE.CHANNELS
    tracker = RGNNTracker(cfg, appearance_dim=app_dim, mask_stride=4).to(device).eval()
    tracker.max_tracks = n
    k1 = cfg.MODEL.NUM_CLASSES + 1
    grid = (90, 160)  # prototype grid of a 360x640 frame

    def boxes(count: int) -> torch.Tensor:
        xy = torch.rand(1, count, 2, device=device) * torch.tensor([560.0, 300.0], device=device)
        return torch.cat([xy, xy + 20 + 60 * torch.rand(1, count, 2, device=device)], dim=-1)

    dets = FrameDetections(
        boxes=boxes(m),
        class_probs=torch.rand(1, m, k1, device=device).softmax(-1),
        scores=torch.rand(1, m, device=device),
        masks=torch.rand(1, m, *grid, device=device),
        appearance=torch.nn.functional.normalize(torch.randn(1, m, app_dim, device=device), dim=-1),
        valid=torch.ones(1, m, dtype=torch.bool, device=device),
        image_sizes=torch.tensor([[360.0, 640.0]], device=device),
    )

    def fresh_state():
        state = tracker.init_state(1, device)
        state.alive[:] = True
        state.h = torch.randn_like(state.h).tanh()
        state.boxes = boxes(n)
        state.app_mean = torch.nn.functional.normalize(torch.randn_like(state.app_mean), dim=-1)
        state.ids = torch.arange(n, device=device)[None]
        return state

    state = fresh_state()
    edges, empty_edges, det_raw, _ = graph_inputs(state, dets, n, tracker.empty_appearance(state, dets))
    gnn_args = (state.h, det_raw, edges, empty_edges, state.alive, dets.valid)
    empty = state.empty_h
    with torch.no_grad():
        gnn_ms = timed(lambda: tracker.gnn(*gnn_args, empty=empty), repeats, 2, device)
        scatter_ms = timed(lambda: scatter_gnn(tracker.gnn, *gnn_args, empty=empty), repeats, 2, device)
        step_ms = timed(lambda: tracker.step(fresh_state(), dets), repeats, 2, device)
    return {"gnn": gnn_ms, "scatter": scatter_ms, "step": step_ms}


def bench_mask_reweighting(cfg, p: int, grid, repeats: int, device: torch.device) -> Dict[str, float]:
    """``MaskReweighting.forward`` vs the plain convolution of Table 3 on ``p`` masks of ``grid`` (no grad)."""
    torch.manual_seed(0)
    tracker = RGNNTracker(cfg, appearance_dim=2 * cfg.MODEL.RGNN.APPEARANCE.CHANNELS, mask_stride=4).to(device)
    module = tracker.mask_reweighting.eval()
    h = torch.randn(p, tracker.dim, device=device)
    masks, box = torch.rand(p, *grid, device=device), (torch.rand(p, *grid, device=device) > 0.5).float()
    with torch.no_grad():
        library = timed(lambda: module(h, masks, box), repeats, 2, device)
        plain = timed(lambda: plain_mask_reweighting(module, h, masks, box), repeats, 2, device)
    return {"library": library, "plain": plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="configs/vis_rgnn/R50_FPN_stage2_150ep_ytvis19.yaml")
    parser.add_argument("--frames", type=int, default=3, help="alternating segmenter / full-step frames per repeat")
    parser.add_argument("--frame-repeats", type=int, default=7, help="repeats (median ratio reported)")
    parser.add_argument("--repeats", type=int, default=20, help="timed tracker steps per setting")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-classes", type=int, default=40)
    parser.add_argument("--skip-frames", action="store_true", help="only the tracker tables")
    parser.add_argument("--skip-tracker", action="store_true", help="only the per-frame table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = bench_config(args.config_file, args.num_classes, args.device)
    device = torch.device(args.device)
    print(
        f"config {args.config_file} | device {args.device} | threads {args.threads} | "
        f"torch {torch.__version__} | torch-scatter {'yes' if HAS_TORCH_SCATTER else 'no'}"
    )

    if not args.skip_frames:
        r = bench_frames(cfg, args.frames, args.frame_repeats, device)
        print(
            "\n| 360x640 frame | segmenter alone (ms) | segmenter + tracker (ms) | ratio (median) | ratio range "
            "| repeats | tracks |"
        )
        print("|---|---:|---:|---:|---|---:|---:|")
        print(
            f"| {os.path.basename(args.config_file)} | {r['segmenter']:.1f} | {r['full']:.1f} | {r['ratio']:.3f} | "
            f"{r['ratio_min']:.3f}-{r['ratio_max']:.3f} | {r['repeats']} | {r['tracks']} |"
        )

    if args.skip_tracker:
        return
    print("\n| tracks x detections | GNN padded (ms) | GNN edge-list reference (ms) | tracker step (ms) |")
    print("|---|---:|---:|---:|")
    for n in (10, 50, 100):
        t = bench_tracker(cfg, n, n, args.repeats, device)
        print(f"| {n}x{n} | {t['gnn']:.2f} | {t['scatter']:.2f} | {t['step']:.2f} |")

    p = cfg.MODEL.RGNN.DETECTOR.MAX_DETECTIONS
    grid = r["grid"] if not args.skip_frames else (90, 160)
    mr = bench_mask_reweighting(cfg, p, grid, args.repeats, device)
    share = f"{100 * (mr['plain'] - mr['library']) / r['full']:.1f} %" if not args.skip_frames else "-"
    print("\n| mask re-weighting | MaskReweighting (ms) | plain conv (ms) | difference / full step |")
    print("|---|---:|---:|---:|")
    print(f"| {p} x {grid[0]}x{grid[1]} | {mr['library']:.2f} | {mr['plain']:.2f} | {share} |")


if __name__ == "__main__":
    main()
