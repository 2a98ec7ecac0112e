#!/usr/bin/env python
"""Training data pipeline at paper scale (prints a table; not a test).

Writes a YouTube-VIS-sized synthetic set (default 50 videos x 36 frames of 720x1280 JPEGs, 1-5 objects, by
``projects.data.synthetic``) and measures, for the VisSTG R50 config (a GPU step consumes 16 frame pairs) and
the RGNN-VIS stage-2 R50 config (4 clips x 10 frames):

1. the training mapper alone (one process): samples/s and frames decoded/s;
2. the training loader with ``DATALOADER.NUM_WORKERS`` 0 and 4: samples/s, frames/s and GPU steps/s it can
   feed (compare with the s/iter printed by benchmarks/gpu_check.sh);
3. JPEG decoding of one 720x1280 frame + resize to the training short side: full decode vs PIL ``draft()``
   reduced-size decoding (DCT scaling by 1/2, 1/4, 1/8, never below the target size), time ratio and the mean
   absolute difference of the resized results (interpolation only).

    python -m benchmarks.bench_data_pipeline                 # paper scale (minutes of CPU)
    python -m benchmarks.bench_data_pipeline --smoke         # tiny (the test)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Tuple

import numpy as np
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIGS = [  # name, config, clips per GPU step, frames per clip
    ("VisSTG R50", "configs/vis_stg/R50_FPN_24ep_ytvis19.yaml", 16, 2),
    ("RGNN stage 2 R50", "configs/vis_rgnn/R50_FPN_stage2_150ep_ytvis19.yaml", 4, 10),
]


def decode_full(path: str, short: int, max_size: int) -> np.ndarray:
    """Full-size decode, then detectron2's ResizeShortestEdge (PIL bilinear) to ``short``."""
    image = np.asarray(Image.open(path).convert("RGB"))
    h, w = image.shape[:2]
    nh, nw = T.ResizeShortestEdge.get_output_shape(h, w, short, max_size)
    return T.ResizeTransform(h, w, nh, nw, Image.BILINEAR).apply_image(image)


def decode_reduced(path: str, short: int, max_size: int) -> np.ndarray:
    """The same output size, decoding the JPEG at the largest DCT scale (1/2, 1/4, 1/8) that stays >= it."""
    img = Image.open(path)
    w, h = img.size
    nh, nw = T.ResizeShortestEdge.get_output_shape(h, w, short, max_size)
    img.draft("RGB", (nw, nh))  # PIL picks a scale with both sides >= the requested size
    image = np.asarray(img.convert("RGB"))
    ih, iw = image.shape[:2]
    return T.ResizeTransform(ih, iw, nh, nw, Image.BILINEAR).apply_image(image)


def training_decode_size(cfg, path: str) -> Tuple[int, int]:
    """(short side, max long side) of the largest training frame: ``INPUT.SCALE_CROP``'s largest scale of the
    frame fitted into ``REFERENCE_SIZE`` (the crop comes after the resize), else ``MIN_SIZE_TRAIN`` /
    ``MAX_SIZE_TRAIN``."""
    sc = cfg.INPUT.SCALE_CROP
    if not sc.ENABLED:
        return max(cfg.INPUT.MIN_SIZE_TRAIN), cfg.INPUT.MAX_SIZE_TRAIN
    w, h = Image.open(path).size
    fit = min(sc.REFERENCE_SIZE[0] / h, sc.REFERENCE_SIZE[1] / w) if len(sc.REFERENCE_SIZE) else 1.0
    scale = fit * max(sc.SCALE_RANGE)
    return round(min(h, w) * scale), round(max(h, w) * scale)


def _time(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def decode_table(path: str, short: int, max_size: int, repeats: int) -> None:
    full, reduced = decode_full(path, short, max_size), decode_reduced(path, short, max_size)
    t_full = _time(lambda: decode_full(path, short, max_size), repeats)
    t_red = _time(lambda: decode_reduced(path, short, max_size), repeats)
    diff = np.abs(full.astype(np.int16) - reduced.astype(np.int16)).mean()
    h, w = np.asarray(Image.open(path)).shape[:2]
    print(
        f"decode {w}x{h} + resize to {full.shape[1]}x{full.shape[0]}: full {1e3 * t_full:.1f} ms, "
        f"draft {1e3 * t_red:.1f} ms, speed-up x{t_full / t_red:.2f}, mean |diff| {diff:.2f} / 255"
    )


def load_cfg(config: str, dataset: str, batch: int, workers: int):
    import train_net

    cfg = train_net.get_project_cfg()
    cfg.merge_from_file(os.path.join(ROOT, config))
    cfg.DATASETS.TRAIN = (dataset,)
    cfg.MODEL.NUM_CLASSES = -1
    cfg.SOLVER.IMS_PER_BATCH = batch
    cfg.DATALOADER.NUM_WORKERS = workers
    train_net.resolve_num_classes(cfg)
    return cfg


def bench_mapper(cfg, dataset: str, samples: int):
    from projects.data.video_mapper import VideoDatasetMapper

    videos = DatasetCatalog.get(dataset)
    mapper = VideoDatasetMapper(cfg, True)
    mapper(videos[0])
    start, frames = time.perf_counter(), 0
    for i in range(samples):
        out = mapper(videos[i % len(videos)])
        frames += len(out["image"]) if out else 0
    dt = time.perf_counter() - start
    return samples / dt, frames / dt


def bench_loader(cfg, batches: int):
    from projects.data import build_video_train_loader

    it = iter(build_video_train_loader(cfg))
    next(it)  # worker start-up
    start, samples, frames = time.perf_counter(), 0, 0
    for _ in range(batches):
        batch = next(it)
        samples += len(batch)
        frames += sum(len(x["image"]) for x in batch)
    dt = time.perf_counter() - start
    return samples / dt, frames / dt, batches / dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=50)
    p.add_argument("--frames", type=int, default=36)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--workers", default="0,4", help="comma-separated DATALOADER.NUM_WORKERS values")
    p.add_argument("--batches", type=int, default=5, help="loader batches timed per setting")
    p.add_argument("--out", default="", help="dataset directory (default: a temporary one)")
    p.add_argument("--smoke", action="store_true", help="2 videos x 6 frames of 144x256, small batches")
    args = p.parse_args()
    if args.smoke:
        args.videos, args.frames, args.height, args.width, args.batches = 2, 6, 144, 256, 1
    from projects.data.synthetic import generate_synthetic_vis
    from projects.data.ytvis import register_ytvis_instances

    out = args.out or tempfile.mkdtemp(prefix="bench_data_")
    start = time.perf_counter()
    json_file = generate_synthetic_vis(out, args.videos, args.frames, args.height, args.width, seed=0)
    image_root = os.path.join(out, "train", "JPEGImages")
    print(
        f"synthetic set: {args.videos} videos x {args.frames} frames of {args.height}x{args.width} in {out} "
        f"({time.perf_counter() - start:.0f} s)"
    )
    dataset = "bench_data_train"
    register_ytvis_instances(dataset, json_file, image_root)
    first = DatasetCatalog.get(dataset)[0]["file_names"][0]
    for name, config, batch, length in CONFIGS:
        bs = 2 if args.smoke else batch
        cfg = load_cfg(config, dataset, bs, 0)
        if args.smoke:
            cfg.INPUT.SAMPLING_FRAME_NUM = min(length, 3)
        per_step = bs * cfg.INPUT.SAMPLING_FRAME_NUM
        sps, fps = bench_mapper(cfg, dataset, max(2, args.batches * bs))
        print(f"[{name}] one GPU step = {bs} clips x {cfg.INPUT.SAMPLING_FRAME_NUM} frames ({per_step} frames)")
        print(
            f"[{name}] mapper (1 process): {sps:.2f} samples/s, {fps:.1f} frames decoded/s "
            f"-> {fps / per_step:.2f} GPU steps/s"
        )
        for workers in [int(w) for w in args.workers.split(",")]:
            cfg = load_cfg(config, dataset, bs, workers)
            if args.smoke:
                cfg.INPUT.SAMPLING_FRAME_NUM = min(length, 3)
            sps, fps, steps = bench_loader(cfg, args.batches)
            print(
                f"[{name}] loader NUM_WORKERS {workers}: {sps:.2f} samples/s, {fps:.1f} frames/s, "
                f"{steps:.2f} GPU steps/s"
            )
        short, max_size = training_decode_size(cfg, first)
        decode_table(first, short, max_size, 3 if args.smoke else 20)


if __name__ == "__main__":
    main()
