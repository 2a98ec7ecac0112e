#!/usr/bin/env python
"""One-command readiness check of the R50 paper configs (VisSTG; RGNN-VIS stage 1; stage 2) on a GPU; run it
through ``benchmarks/gpu_check.sh``. Random weights and random inputs (no dataset, no checkpoint). Prints per
config:

1. training: ``--train-iters`` iterations with AMP at the paper's input size (``INPUT.SCALE_CROP.SIZE`` where the
   config enables it, RGNN-VIS 480 x 864; else the largest ``MIN_SIZE_TRAIN`` short side, 16:9, capped at
   ``MAX_SIZE_TRAIN``) and per-GPU batch (VisSTG 16 pairs over
   2 GPUs, RGNN stage 1 8 frames, stage 2 4 clips x 10 frames, on one GPU): s/iter (after 3 warm-up
   iterations) and peak memory;
2. streaming: online inference over ``--frames`` frames of 360x640, with AMP and in fp32: FPS;
3. host syncs per frame (frames 2..) of the streaming step: ``torch.cuda.set_sync_debug_mode("warn")`` warnings
   on CUDA, and the profiler count of ``projects.utils.host_syncs`` (both devices); then
   ``python -m benchmarks.bench_host_syncs`` (both models' R50 configs; not with ``--smoke``);
4. with >= 2 GPUs (or ``--ddp-cpu``): a 2-process DDP run of a few training iterations of each config.

``--device cpu --smoke`` runs everything at tiny sizes on the CPU (bf16 autocast), as the test does.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Dict, List

import torch
from detectron2.engine import launch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances

from projects.engine.amp import resolve_amp_dtype
from projects.engine.ddp import create_ddp_model
from projects.utils.host_syncs import online_step_syncs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name, config, per-GPU batch (clips), frames per clip
CONFIGS = [
    ("VisSTG R50", "configs/vis_stg/R50_FPN_24ep_ytvis19.yaml", 8, 2),
    ("RGNN stage 1 R50", "configs/vis_rgnn/R50_FPN_stage1_120ep_ytvis19.yaml", 8, 1),
    ("RGNN stage 2 R50", "configs/vis_rgnn/R50_FPN_stage2_150ep_ytvis19.yaml", 4, 10),
]


def load_cfg(config: str, device: str, smoke: bool):
    import train_net

    cfg = train_net.get_project_cfg()
    cfg.merge_from_file(os.path.join(ROOT, config))
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS, cfg.MODEL.NUM_CLASSES = device, "", 40
    if smoke:
        cfg.MODEL.FPN.OUT_CHANNELS = 64
        if cfg.MODEL.get("RGNN") is not None and cfg.MODEL.RGNN.TEST_RESIZE:  # the paper's 480 x 864: tiny here too
            cfg.MODEL.RGNN.TEST_RESIZE = list(train_size(cfg, smoke))
        if cfg.MODEL.get("RGNN") is not None and cfg.MODEL.RGNN.get("TRAIN_RESIZE"):  # the same in training
            cfg.MODEL.RGNN.TRAIN_RESIZE = list(train_size(cfg, smoke))
    return cfg


def train_size(cfg, smoke: bool):
    if smoke:
        return 64, 96
    if cfg.INPUT.SCALE_CROP.ENABLED:  # every training frame at this size (the RGNN-VIS release's scale-crop)
        return tuple(cfg.INPUT.SCALE_CROP.SIZE)
    short = max(cfg.INPUT.MIN_SIZE_TRAIN)
    return short, min(cfg.INPUT.MAX_SIZE_TRAIN, int(round(short * 16 / 9 / 32)) * 32)


def random_clip(length: int, h: int, w: int, seed: int) -> Dict:
    """A clip of random frames with 3 moving rectangles (consistent ids and classes)."""
    g = torch.Generator().manual_seed(seed)
    images, instances = [], []
    for t in range(length):
        img = torch.randint(0, 255, (3, h, w), dtype=torch.uint8, generator=g)
        masks = torch.zeros(3, h, w, dtype=torch.bool)
        for i in range(3):
            y0, x0 = (h * (i + 1)) // 5, (w * i) // 4 + t * max(w // 100, 1)
            masks[i, y0 : y0 + h // 4, x0 : x0 + w // 5] = True
        inst = Instances((h, w))
        inst.gt_masks = BitMasks(masks)
        inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
        inst.gt_classes = torch.tensor([0, 5, 9])
        inst.gt_ids = torch.tensor([1, 2, 3])
        images.append(img), instances.append(inst)
    return {"image": images, "instances": instances, "height": h, "width": w}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def train_iters(model, batch, iters: int, device: str, amp: bool, warmup: int = 3):
    """SGD steps under autocast (GradScaler on CUDA), gradients clipped to norm 1 (random init, frozen
    BatchNorm: unclipped steps diverge). Returns (s/iter over the timed iterations, non-finite losses)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-5, momentum=0.9)
    dtype = resolve_amp_dtype("auto", device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device == "cuda")
    model.train()
    start, losses_seen = None, []
    for i in range(warmup + iters):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        with torch.autocast(device, dtype=dtype, enabled=amp):
            losses = model(batch)
        loss = sum(v.float() for v in losses.values())
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(opt)
        scaler.update()
        losses_seen.append(loss.detach())
    _sync(device)
    elapsed = (time.perf_counter() - start) / iters
    return elapsed, int((~torch.isfinite(torch.stack(losses_seen))).sum())


def stream(model, frames: List[torch.Tensor], device: str, amp: bool) -> float:
    """FPS of model.step over ``frames`` (first frame excluded from the timing)."""
    model.eval()
    dtype = resolve_amp_dtype("auto", device)
    state = model.init_video_state()
    h, w = frames[0].shape[-2:]
    with torch.no_grad(), torch.autocast(device, dtype=dtype, enabled=amp):
        for t, img in enumerate(frames):
            if t == 1:
                _sync(device)
                start = time.perf_counter()
            model.step({"image": img, "height": h, "width": w, "frame_idx": t}, state)
    _sync(device)
    return (len(frames) - 1) / (time.perf_counter() - start)


def host_syncs_per_frame(model, frames: List[torch.Tensor], device: str) -> str:
    """Profiler count (and CUDA sync-debug warnings) per frame on frames 2.. of the streaming step."""
    model.eval()
    r = online_step_syncs(model, model.init_video_state(), frames, device)
    text = f"profiler {r['mean_syncs_per_frame']:.1f}/frame (max {r['syncs_per_frame']}) {r['per_op']}"
    if r["cuda_sync_warnings_per_frame"] is not None:
        text += f"; set_sync_debug_mode warnings {r['cuda_sync_warnings_per_frame']}/frame (max)"
    return text


def check_config(name, config, batch_size, length, args) -> None:
    cfg = load_cfg(config, args.device, args.smoke)
    torch.manual_seed(0)
    model = build_model(cfg)
    h, w = train_size(cfg, args.smoke)
    bs = 1 if args.smoke else batch_size
    batch = [random_clip(2 if args.smoke and length > 2 else length, h, w, s) for s in range(bs)]
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    s_iter, bad = train_iters(model, batch, args.train_iters, args.device, amp=True, warmup=1 if args.smoke else 3)
    mem = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if args.device == "cuda" else "n/a (cpu)"
    print(
        f"[{name}] train AMP {bs} x {len(batch[0]['image'])} frames at {h}x{w}: {s_iter:.3f} s/iter, "
        f"peak memory {mem}, non-finite losses {bad}/{args.train_iters + (1 if args.smoke else 3)}",
        flush=True,
    )
    sh, sw = (64, 96) if args.smoke else (360, 640)
    g = torch.Generator().manual_seed(1)
    frames = [torch.randint(0, 255, (3, sh, sw), dtype=torch.uint8, generator=g) for _ in range(args.frames)]
    fps_amp, fps_fp32 = stream(model, frames, args.device, True), stream(model, frames, args.device, False)
    print(
        f"[{name}] streaming {args.frames} frames at {sh}x{sw}: {fps_amp:.1f} FPS AMP, {fps_fp32:.1f} FPS fp32",
        flush=True,
    )
    print(
        f"[{name}] host syncs: {host_syncs_per_frame(model, frames[: min(len(frames), 30)], args.device)}", flush=True
    )


def _ddp_worker(config, device, smoke, iters, length, batch_size) -> None:
    from detectron2.utils import comm

    cfg = load_cfg(config, device, smoke)
    torch.manual_seed(0)
    model = create_ddp_model(build_model(cfg), broadcast_buffers=False)
    h, w = train_size(cfg, smoke)
    bs = 1 if smoke else batch_size
    batch = [random_clip(2 if smoke and length > 2 else length, h, w, 10 * comm.get_rank() + s) for s in range(bs)]
    s_iter, _ = train_iters(model, batch, iters, device, amp=True, warmup=1)
    if comm.is_main_process():
        print(f"  DDP 2 x {device}: {s_iter:.3f} s/iter", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and counts (CPU test)")
    parser.add_argument("--train-iters", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--ddp-cpu", action="store_true", help="also run the 2-process DDP part with gloo")
    parser.add_argument("--only", default="", help="substring of the config names to run")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: --device cuda but torch.cuda.is_available() is False (use --device cpu --smoke)")
    args.train_iters = args.train_iters or (2 if args.smoke else 50)
    args.frames = args.frames or (4 if args.smoke else 300)
    torch.backends.cudnn.benchmark = args.device == "cuda"
    print(
        f"gpu_check on {torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}"
        f"{' (smoke)' if args.smoke else ''}",
        flush=True,
    )
    selected = [c for c in CONFIGS if args.only.lower() in c[0].lower()]
    for name, config, batch_size, length in selected:
        check_config(name, config, batch_size, length, args)
    if args.smoke:
        print("bench_host_syncs.py: not run in --smoke", flush=True)
    else:
        subprocess.run([sys.executable, "-m", "benchmarks.bench_host_syncs"], cwd=ROOT, check=False)
    two_gpus = args.device == "cuda" and torch.cuda.device_count() >= 2
    if two_gpus or (args.device == "cpu" and args.ddp_cpu):
        for name, config, batch_size, length in selected:
            print(f"[{name}] 2-process DDP:", flush=True)
            launch(
                _ddp_worker,
                2,
                dist_url="auto",
                args=(config, args.device, args.smoke, max(2, args.train_iters // 5), length, batch_size),
            )
    else:
        print("2-process DDP: skipped (fewer than 2 GPUs; --ddp-cpu runs it on the CPU)", flush=True)


if __name__ == "__main__":
    main()
