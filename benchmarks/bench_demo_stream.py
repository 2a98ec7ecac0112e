#!/usr/bin/env python
"""Streaming predictor: FPS at 360x640 and resident memory over a long synthetic stream (prints a table).

    python -m benchmarks.bench_demo_stream --config-file configs/vis_stg/synthetic_R18.yaml \\
        --frames 2000 MODEL.WEIGHTS output/demo/vis_stg/model_final.pth

Frames come from consecutive synthetic videos rendered on the fly at --height x --width and are fed to the model
at that size (INPUT.MIN/MAX_SIZE_TEST are set to it unless given); the time spent rendering frames is excluded
from the FPS. Nothing is accumulated except the model's online state, so RSS at frame 200 and at the last frame
should be (nearly) equal.
Without MODEL.WEIGHTS the model is randomly initialised (memory behaviour does not depend on the weights).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import psutil
import torch

from demo.demo import setup_cfg
from projects.data.synthetic import generate_synthetic_vis
from projects.engine.predictor import VideoPredictor


def synthetic_frames(n: int, height: int, width: int, chunk: int = 100):
    """An endless-looking stream: consecutive synthetic videos of ``chunk`` frames, rendered chunk by chunk."""
    import json

    import cv2

    with tempfile.TemporaryDirectory() as tmp:
        for start in range(0, n, chunk):
            out = os.path.join(tmp, str(start))
            json_file = generate_synthetic_vis(out, 1, min(chunk, n - start), height, width, seed=start, split_name="s")
            video = json.load(open(json_file))["videos"][0]
            for f in video["file_names"]:
                yield cv2.imread(os.path.join(out, "s", "JPEGImages", f))


class _Timed:
    """Wraps a frame iterator and sums the time spent producing frames (excluded from the model's FPS)."""

    def __init__(self, frames):
        self.frames, self.seconds = iter(frames), 0.0

    def __iter__(self):
        return self

    def __next__(self):
        t = time.perf_counter()
        try:
            return next(self.frames)
        finally:
            self.seconds += time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("opts", nargs=argparse.REMAINDER)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    opts = list(args.opts)
    tmp_ckpt = None
    if "MODEL.WEIGHTS" not in opts:
        cfg = setup_cfg(argparse.Namespace(config_file=args.config_file, opts=opts))
        from detectron2.modeling import build_model

        from projects.data.model_metadata import resolve_inference_metadata

        resolve_inference_metadata(cfg)  # MODEL.NUM_CLASSES from the config's dataset

        tmp_ckpt = os.path.join(tempfile.mkdtemp(), "random_init.pth")
        torch.save({"model": build_model(cfg).state_dict()}, tmp_ckpt)
        opts += ["MODEL.WEIGHTS", tmp_ckpt]
    if "INPUT.MIN_SIZE_TEST" not in opts:
        opts += [
            "INPUT.MIN_SIZE_TEST",
            str(min(args.height, args.width)),
            "INPUT.MAX_SIZE_TEST",
            str(max(args.height, args.width)),
        ]
    cfg = setup_cfg(argparse.Namespace(config_file=args.config_file, opts=opts + ["MODEL.DEVICE", "cpu"]))
    predictor = VideoPredictor(cfg)
    proc = psutil.Process()
    marks = sorted({min(200, args.frames), args.frames // 2, args.frames})
    frames = _Timed(synthetic_frames(args.frames, args.height, args.width))
    rows, start, render_at_start = [], None, 0.0
    for r in predictor.stream(frames):
        n = r.frame_idx + 1
        if n == 10:  # the first frames warm up allocators and caches
            start, render_at_start = time.perf_counter(), frames.seconds
        if n in marks:
            rows.append((n, proc.memory_info().rss / 2**20, len(r.instances)))
    if start is None:
        raise SystemExit("--frames must be at least 10")
    model_seconds = time.perf_counter() - start - (frames.seconds - render_at_start)
    fps = (args.frames - 10) / model_seconds
    print(
        f"config: {args.config_file}  frames {args.height}x{args.width} (model input "
        f"{cfg.INPUT.MIN_SIZE_TEST}/{cfg.INPUT.MAX_SIZE_TEST})  threads {args.threads}"
    )
    print(f"model FPS (frames 10..{args.frames}, frame rendering excluded): {fps:.2f}")
    print("| frame | RSS (MiB) | instances in frame |\n|---:|---:|---:|")
    for n, rss, k in rows:
        print(f"| {n} | {rss:.1f} | {k} |")
    if len(rows) >= 2:
        print(f"RSS growth from frame {rows[0][0]} to {rows[-1][0]}: {rows[-1][1] - rows[0][1]:+.1f} MiB")


if __name__ == "__main__":
    main()
