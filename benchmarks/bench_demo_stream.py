#!/usr/bin/env python
"""Streaming predictor: FPS at 360x640 and resident memory over a long synthetic stream (prints a table).

    python benchmarks/bench_demo_stream.py --config-file configs/vis_stg/synthetic_R18.yaml \\
        --frames 2000 MODEL.WEIGHTS output/demo/vis_stg/model_final.pth

Frames come from one long synthetic video rendered on the fly at --height x --width; nothing is accumulated
except the model's online state, so RSS at frame 200 and at the last frame should be (nearly) equal.
Without MODEL.WEIGHTS the model is randomly initialised (memory behaviour does not depend on the weights).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import psutil
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from demo.demo import setup_cfg  # noqa: E402
from demo.predictor import VideoPredictor  # noqa: E402
from projects.data.synthetic import generate_synthetic_vis  # noqa: E402


def synthetic_frames(n: int, height: int, width: int, chunk: int = 100):
    """An endless-looking stream: consecutive synthetic videos of ``chunk`` frames, rendered chunk by chunk."""
    import cv2
    import json

    with tempfile.TemporaryDirectory() as tmp:
        for start in range(0, n, chunk):
            out = os.path.join(tmp, str(start))
            json_file = generate_synthetic_vis(out, 1, min(chunk, n - start), height, width, seed=start, split_name="s")
            video = json.load(open(json_file))["videos"][0]
            for f in video["file_names"]:
                yield cv2.imread(os.path.join(out, "s", "JPEGImages", f))


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

        tmp_ckpt = os.path.join(tempfile.mkdtemp(), "random_init.pth")
        torch.save({"model": build_model(cfg).state_dict()}, tmp_ckpt)
        opts += ["MODEL.WEIGHTS", tmp_ckpt]
    cfg = setup_cfg(argparse.Namespace(config_file=args.config_file, opts=opts + ["MODEL.DEVICE", "cpu"]))
    predictor = VideoPredictor(cfg)
    proc = psutil.Process()
    marks = sorted({min(200, args.frames), args.frames // 2, args.frames})
    rows, start, t0 = [], None, time.perf_counter()
    for r in predictor.stream(synthetic_frames(args.frames, args.height, args.width)):
        n = r.frame_idx + 1
        if n == 10:
            start = time.perf_counter()
        if n in marks:
            rows.append((n, proc.memory_info().rss / 2**20, len(r.instances)))
    total = time.perf_counter() - (start or t0)
    fps = (args.frames - 10) / total if start else args.frames / total
    print(f"config: {args.config_file}  input {args.height}x{args.width}  threads {args.threads}")
    print(f"model FPS (frames 10..{args.frames}, incl. frame rendering): {fps:.2f}")
    print("| frame | RSS (MiB) | instances in frame |\n|---:|---:|---:|")
    for n, rss, k in rows:
        print(f"| {n} | {rss:.1f} | {k} |")
    if len(rows) >= 2:
        print(f"RSS growth from frame {rows[0][0]} to {rows[-1][0]}: {rows[-1][1] - rows[0][1]:+.1f} MiB")


if __name__ == "__main__":
    main()
