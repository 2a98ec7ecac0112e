"""How long ``python -m projects.evaluation`` takes to check, refuse or score a 720p, 300-frame video.

Writes a GT with TRACKS tracks and a results file with PREDS predictions (moving discs, compressed RLE) and
prints the wall time of: the RLE validation alone (all masks, one vectorised pass per track), the full CLI on
the valid files, and the CLI on the same results with one truncated counts string in the last frame of the
last prediction (must be refused, exit 1, in well under a second of checking).

    python -m benchmarks.bench_eval_validation [--frames 300] [--tracks 5] [--preds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pycocotools.mask as mask_util

from projects.evaluation.rle_check import check_rles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

H, W = 720, 1280


def disc_track(rng, frames):
    cy, cx, r = rng.integers(150, 570), rng.integers(150, 1130), rng.integers(30, 140)
    vy, vx = rng.normal(0, 1.5, size=2)
    yy, xx = np.ogrid[:H, :W]
    segms = []
    for t in range(frames):
        m = ((yy - cy - vy * t) ** 2 + (xx - cx - vx * t) ** 2 < r**2).astype(np.uint8)
        rle = mask_util.encode(np.asfortranarray(m))
        segms.append({"size": [H, W], "counts": rle["counts"].decode()})
    return segms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--tracks", type=int, default=5)
    parser.add_argument("--preds", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    tracks = [disc_track(rng, args.frames) for _ in range(args.tracks)]
    gt = {
        "videos": [{"id": 1, "height": H, "width": W, "length": args.frames}],
        "categories": [{"id": 1, "name": "disc"}],
        "annotations": [
            {
                "id": i + 1,
                "video_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentations": s,
                "areas": [int(mask_util.area(r)) for r in s],
            }
            for i, s in enumerate(tracks)
        ],
    }
    preds = [
        {
            "video_id": 1,
            "category_id": 1,
            "score": float(rng.random()),
            "segmentations": tracks[i % args.tracks] if i < args.tracks else disc_track(rng, args.frames),
        }
        for i in range(args.preds)
    ]
    all_rles = [r for p in preds for r in p["segmentations"]] + [r for s in tracks for r in s]
    start = time.perf_counter()
    for p in preds:
        assert all(m is None for m in check_rles(p["segmentations"]))
    per_track = time.perf_counter() - start
    start = time.perf_counter()
    assert all(m is None for m in check_rles(all_rles))
    one_pass = time.perf_counter() - start
    chars = sum(len(r["counts"]) for r in all_rles)
    print(
        f"{len(all_rles)} RLEs of {H}x{W} ({chars} counts characters): validation {per_track * 1e3:.0f} ms "
        f"track by track, {one_pass * 1e3:.0f} ms in one pass"
    )
    with tempfile.TemporaryDirectory() as tmp:
        gt_file, res_file, bad_file = (os.path.join(tmp, n) for n in ("gt.json", "res.json", "bad.json"))
        json.dump(gt, open(gt_file, "w"))
        json.dump(preds, open(res_file, "w"))
        last = preds[-1]["segmentations"][-1]["counts"]
        cut = next(i for i in range(len(last) - 1, 0, -1) if (ord(last[i - 1]) - 48) & 0x20)
        preds[-1]["segmentations"][-1] = {"size": [H, W], "counts": last[:cut]}
        json.dump(preds, open(bad_file, "w"))
        from projects.evaluation import evaluate_ytvis

        start = time.perf_counter()
        try:
            evaluate_ytvis(gt, preds)
        except ValueError:
            print(
                f"in process, JSON already parsed: truncated RLE refused after {time.perf_counter() - start:.2f} s "
                f"(GT loaded, all {args.preds} predictions checked)"
            )
        for name, path in (("valid results", res_file), ("truncated RLE", bad_file)):
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "projects.evaluation", gt_file, path], cwd=ROOT, capture_output=True, text=True
            )
            took = time.perf_counter() - start
            tail = (proc.stdout.strip() or proc.stderr.strip().splitlines()[-1])[:160]
            print(
                f"CLI on {name}: exit {proc.returncode} in {took:.2f} s (incl. Python start-up, JSON parsing): {tail}"
            )


if __name__ == "__main__":
    main()
