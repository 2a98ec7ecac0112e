"""Hand-made YouTube-VIS ground truth / predictions and the evaluation CLI runner shared by the evaluator tests."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest

REPO = Path(__file__).resolve().parents[1]
H = W = 100
RECALL_THRS = np.linspace(0.0, 1.0, 101)


def check(metrics, **expected):
    """Compare metrics with hand-derived values (precision carries pycocotools' 1e-16 epsilon)."""
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key


def box(x0, y0, x1, y1, h=H, w=W):
    m = np.zeros((h, w), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def rle(mask):
    """Compressed RLE with str counts (``None`` stays ``None``; an all-zero mask gives an empty RLE)."""
    if mask is None:
        return None
    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode()}


def gt_json(tracks, length=2, h=H, w=W, videos=(1,), categories=None):
    """``tracks``: dicts with video_id (default 1), category_id (default 1), masks [array|None], iscrowd, areas."""
    anns = []
    for i, t in enumerate(tracks):
        ann = {
            "id": i + 1,
            "video_id": t.get("video_id", 1),
            "category_id": t.get("category_id", 1),
            "iscrowd": t.get("iscrowd", 0),
            "segmentations": [rle(m) for m in t["masks"]],
            "areas": t.get("areas", [None if m is None else int(m.sum()) for m in t["masks"]]),
        }
        anns.append(ann)
    return {
        "videos": [
            {
                "id": v,
                "height": h,
                "width": w,
                "length": length,
                "file_names": [f"{v}/{k:05d}.jpg" for k in range(length)],
            }
            for v in videos
        ],
        "categories": [{"id": k, "name": n} for k, n in (categories or {1: "cat", 2: "dog"}).items()],
        "annotations": anns,
    }


def pred(masks, score, category_id=1, video_id=1):
    return {"video_id": video_id, "category_id": category_id, "score": score, "segmentations": [rle(m) for m in masks]}


A, B, C = box(0, 0, 10, 10), box(20, 20, 30, 30), box(50, 50, 60, 60)  # disjoint 100-pixel squares


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "projects.evaluation", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
