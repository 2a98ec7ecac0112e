#!/usr/bin/env python
"""VisSTG speed / memory benchmark (prints tables; not a test).

1. Per-frame online inference time of the full model (graph + kernel warp + tracking, ``VisSTG.step``) vs the
   same backbone and heads without graph, warp and tracking, on random 360×640 frames. Weights are random (box
   sizes / offsets constant, ``build_bench_model``), so the number of instances is fixed instead of learned:
   every frame keeps ``--instances-per-frame`` detections and they are the next frame's reference instances
   (score thresholds 0, memory off — with random weights the memory would only grow).
2. The graph step of §3.2 (all FPN levels, L iterations, no grad) vs the number of reference instances:
   the edge-list (scatter) path of training, the fixed-size masked layout of the online step
   (``SpatialTemporalGraph.forward_online``) and a dense all-pairs path (every instance × every pixel,
   non-edges masked); median time and peak memory. Each case runs in a fresh process; the peak is the growth
   of the resident set during the first run (Linux ``VmHWM`` reset through ``/proc/self/clear_refs``), or
   ``torch.cuda.max_memory_allocated`` on CUDA.

    python -m benchmarks.bench_vis_stg                      # paper R50 config (random weights), CPU
    python -m benchmarks.bench_vis_stg --config-file configs/vis_stg/synthetic_R18.yaml --height 160 --width 256
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from typing import Callable, List, Tuple

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Instances

from projects.config import add_video_config
from tests.vis_stg_graph_reference import dense_graph_update
from vis_stg import add_vis_stg_config
from vis_stg.detection_head import CenterNetHead
from vis_stg.graph import SpatialTemporalGraph, window_edges
from vis_stg.online_step import frame_to_host
from vis_stg.state import VideoState
from vis_stg.sync_free import gather_at_cells_static


def load_cfg(args):
    cfg = get_cfg()
    add_video_config(cfg)
    add_vis_stg_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.MODEL.DEVICE = args.device
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.NUM_CLASSES = args.num_classes
    c = cfg.MODEL.VIS_STG
    c.INFERENCE.MAX_DETECTIONS = args.instances_per_frame
    c.INFERENCE.SCORE_THRESH = c.INFERENCE.NMS_THRESH = c.TRACK.REF_SCORE_THRESH = 0.0
    c.TRACK.MEMORY_FRAMES = 0
    return cfg


def build_bench_model(cfg):
    """The model with random weights, except that box sizes / offsets are constant (4 cells, half a cell):
    a random backbone's activations decode to boxes thousands of pixels off the image, whose ROIAlign
    (adaptive sampling) would dominate every timing."""
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for branch, value in ((model.det_head.size, 4.0), (model.det_head.offset, 0.5)):
            branch[-1].weight.zero_()
            branch[-1].bias.fill_(value)
    return model


def build_graph(cfg) -> SpatialTemporalGraph:
    """The model's graph module alone (FPN level pN has stride 2^N)."""
    c = cfg.MODEL.VIS_STG
    strides = [2 ** int(name[1:]) for name in c.IN_FEATURES]
    return (
        SpatialTemporalGraph(
            cfg.MODEL.FPN.OUT_CHANNELS,
            strides,
            c.GRAPH.WINDOW_SIZES,
            c.GRAPH.HIDDEN_DIM,
            c.GRAPH.NUM_ITERS,
            c.GRAPH.AGGREGATION,
            c.GRAPH.POOLER_RESOLUTION,
            c.GRAPH.POOLER_SAMPLING_RATIO,
            c.GRAPH.NODE_POOL,
        )
        .to(cfg.MODEL.DEVICE)
        .eval()
    )


@torch.no_grad()
def plain_step(model, frame) -> Instances:
    """Backbone + CenterNet + CondInst on F_t only: no graph, no kernel warp, no tracking; the same sync-free
    decoding and single output copy as ``VisSTG.step``."""
    images, image_size, feats, fine = model._frame_features(frame, VideoState())
    s = model.decode
    dets, converged = CenterNetHead.inference(
        *model.det_head(feats),
        model.strides,
        s.score_thresh,
        s.topk_candidates,
        s.nms_thresh,
        s.max_detections,
        s.fixed_point_iters,
    )
    zeros = dets.level.new_zeros(len(dets))
    kernels = gather_at_cells_static(model.controller(feats), dets.level, dets.cells)
    probs = model.predict_masks(model.mask_branch(feats[0], fine), kernels, dets.level, dets.cells, zeros).sigmoid()
    counts = torch.cat([torch.stack([zeros.sum(), zeros.sum(), converged.long()]), dets.dropped])
    output_size = (frame["height"], frame["width"])
    instances, _ = frame_to_host(
        dets, zeros, probs, counts, image_size, output_size, model.mask_out_stride, model.mask_threshold
    )
    return instances


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_frames(fn: Callable, frames: List[dict], device: str, warmup: int) -> Tuple[float, List[int]]:
    """Median seconds per frame after ``warmup`` frames; number of instances returned per frame."""
    times, counts = [], []
    for i, frame in enumerate(frames):
        sync(device)
        t0 = time.perf_counter()
        out = fn(frame)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            counts.append(len(out))
    return statistics.median(times), counts


def bench_inference(args) -> None:
    model = build_bench_model(load_cfg(args))
    h, w = args.height, args.width
    frames = [
        {"image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8), "height": h, "width": w, "frame_idx": t}
        for t in range(args.frames)
    ]
    state = model.init_video_state()
    full, n_full = time_frames(lambda f: model.step(f, state), frames, args.device, args.warmup)
    plain, n_plain = time_frames(lambda f: plain_step(model, f), frames, args.device, args.warmup)
    print(
        f"\nPer-frame inference, {h}x{w}, {args.device}, {torch.get_num_threads()} threads, "
        f"config {os.path.basename(args.config_file)}, levels {model.in_features}, median of "
        f"{args.frames - args.warmup} frames, {args.instances_per_frame} instances per frame"
    )
    print(f"| {'variant':<46} | {'ms / frame':>10} | {'FPS':>6} |")
    print(f"|{'-' * 48}|{'-' * 12}|{'-' * 8}|")
    for name, t in [
        ("backbone + heads (no graph / warp / tracking)", plain),
        ("full VisSTG step (graph + warp + tracking)", full),
    ]:
        print(f"| {name:<46} | {1000 * t:>10.1f} | {1 / t:>6.2f} |")
    print(f"| {'ratio full / plain':<46} | {full / plain:>10.2f} | {'':>6} |")
    if set(n_full) != {args.instances_per_frame} or set(n_plain) != {args.instances_per_frame}:
        print(f"note: instances per frame varied: full {n_full}, plain {n_plain}")


def graph_inputs(
    graph: SpatialTemporalGraph, dim: int, num_instances: int, height: int, width: int, device: str, seed: int = 0
):
    """Random F_t per level (padded to the coarsest stride), reference nodes and centres inside the image."""
    g = torch.Generator().manual_seed(seed)
    div = max(graph.strides)
    ph, pw = -(-height // div) * div, -(-width // div) * div
    feats = [torch.randn(1, dim, ph // s, pw // s, generator=g).to(device) for s in graph.strides]
    nodes = [torch.randn(num_instances, dim, generator=g).to(device) for _ in graph.strides]
    centers = (torch.rand(num_instances, 2, generator=g) * torch.tensor([width, height])).to(device)
    return feats, nodes, centers


def level_edges(graph: SpatialTemporalGraph, centers: torch.Tensor, lvl: int, h: int, w: int):
    cells = (centers / graph.strides[lvl]).floor().long()
    cells[:, 0].clamp_(0, w - 1)
    cells[:, 1].clamp_(0, h - 1)
    src, dst, valid = window_edges(cells, h, w, graph.window_sizes[lvl])
    return src[valid], dst[valid]


@torch.no_grad()
def dense_graph(graph: SpatialTemporalGraph, nodes, centers, feats) -> List[torch.Tensor]:
    """All-pairs path: the same windows, as an (N, H·W) adjacency per level, through the test oracle
    ``dense_graph_update``."""
    out = []
    for lvl, feat in enumerate(feats):
        _, d, h, w = feat.shape
        src, dst = level_edges(graph, centers, lvl, h, w)
        adjacency = torch.zeros(len(centers), h * w, dtype=torch.bool, device=feat.device)
        adjacency[src, dst] = True
        _, pix, _ = dense_graph_update(graph.update, nodes[lvl], feat.flatten(2)[0].t(), adjacency)
        out.append(pix.t().reshape(1, d, h, w))
    return out


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _graph_case(args, path: str, num_instances: int, queue) -> None:
    torch.set_num_threads(args.threads)
    cfg = load_cfg(args)
    torch.manual_seed(0)
    graph = build_graph(cfg)
    feats, nodes, centers = graph_inputs(
        graph, cfg.MODEL.FPN.OUT_CHANNELS, num_instances, args.height, args.width, args.device
    )
    batch = torch.zeros(num_instances, dtype=torch.long, device=args.device)

    def run():
        if path == "scatter":
            with torch.no_grad():
                return graph(nodes, centers, batch, feats)[0]
        if path == "online":  # fixed layout of the online step (no host sync)
            with torch.no_grad():
                return graph.forward_online(nodes, centers, feats)[0]
        return dense_graph(graph, nodes, centers, feats)

    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS
            f.write("5")
    run()
    peak = (torch.cuda.max_memory_allocated() if cuda else _rss_bytes("VmHWM")) - base
    times = []
    for _ in range(args.repeats):
        sync(args.device)
        t0 = time.perf_counter()
        run()
        sync(args.device)
        times.append(time.perf_counter() - t0)
    shapes = [f.shape[-2:] for f in feats]
    num_edges = sum(len(level_edges(graph, centers, lvl, h, w)[0]) for lvl, (h, w) in enumerate(shapes))
    num_pixels = sum(h * w for h, w in shapes)
    queue.put((statistics.median(times), peak, num_edges, num_instances * num_pixels))


def bench_graph(args) -> None:
    ctx = mp.get_context("spawn")
    rows = []
    for n in args.instances:
        for path in ("scatter", "online", "dense"):
            queue = ctx.Queue()
            proc = ctx.Process(target=_graph_case, args=(args, path, n, queue))
            proc.start()
            proc.join()
            rows.append((n, path, *queue.get()) if proc.exitcode == 0 else (n, path, float("nan"), 0, 0, 0))
    print(
        f"\nGraph step (§3.2, {args.height}x{args.width}, all levels, L iterations, no grad, {args.device}, "
        f"{args.threads} threads): edge list + scatter (training), fixed-size online layout (w² edges per "
        f"instance, masked; no host sync) and dense all-pairs; peak = extra memory during the run"
    )
    print(f"| {'instances':>9} | {'path':<7} | {'edges':>7} | {'pairs':>9} | {'ms':>9} | {'peak MiB':>9} |")
    print(f"|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 11}|{'-' * 11}|{'-' * 11}|")
    for n, path, t, peak, edges, pairs in rows:
        print(f"| {n:>9} | {path:<7} | {edges:>7} | {pairs:>9} | {1000 * t:>9.1f} | {peak / 2**20:>9.1f} |")


def main(argv=None) -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=os.path.join(root, "configs/vis_stg/R50_FPN_24ep_ytvis19.yaml"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--num-classes", type=int, default=40)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--instances-per-frame", type=int, default=10)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 10, 50], help="graph step cases")
    parser.add_argument("--skip-inference", action="store_true")
    parser.add_argument("--skip-graph", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.skip_inference:
        bench_inference(args)
    if not args.skip_graph:
        bench_graph(args)


if __name__ == "__main__":
    main()
