"""Hand-made tiny YouTube-VIS-format datasets for tests (independent of the synthetic generator)."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util

CATEGORIES = [{"id": 3, "name": "cube"}, {"id": 7, "name": "ball"}]  # non-contiguous ids on purpose


def _rle(mask: np.ndarray, kind: str, box) -> Any:
    if kind == "polygon":
        x0, y0, x1, y1 = box
        return [[x0, y0, x1, y0, x1, y1, x0, y1]]
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    if kind == "compressed":
        return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    # uncompressed: counts as a list of run lengths (column-major), like the official train.json
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, prev, run = [], 0, 0
    for v in flat:
        if v != prev:
            counts.append(run)
            run, prev = 0, v
        run += 1
    counts.append(run)
    return {"size": [mask.shape[0], mask.shape[1]], "counts": counts}


def write_tiny_ytvis(
    root: str,
    num_videos: int = 2,
    length: int = 4,
    height: int = 32,
    width: int = 48,
    kind: str = "uncompressed",
    with_annotations: bool = True,
    null_frame: Optional[int] = 2,
    name: str = "tiny",
) -> Tuple[str, str, Dict[str, Any]]:
    """Two objects per video (a 'cube' moving right, a 'ball' that is invisible in ``null_frame``).

    Returns (json_file, image_root, gt_json_dict). Rectangles keep polygon and RLE masks identical.
    """
    image_root = os.path.join(root, name, "JPEGImages")
    videos, annotations = [], []
    ann_id = 1
    for v in range(1, num_videos + 1):
        vname = f"video{v}"
        os.makedirs(os.path.join(image_root, vname), exist_ok=True)
        files = []
        tracks = {1: (3, []), 2: (7, [])}
        for t in range(length):
            img = np.full((height, width, 3), 90, np.uint8)
            img[:, :, v % 3] = 40
            boxes = {1: (2 + 2 * t, 4, 14 + 2 * t, 16), 2: (30, 18, 44, 30)}
            for k, (x0, y0, x1, y1) in boxes.items():
                visible = not (k == 2 and t == null_frame)
                mask = np.zeros((height, width), bool)
                if visible:
                    mask[y0:y1, x0:x1] = True
                    img[mask] = (200, 60, 60) if k == 1 else (60, 200, 60)
                tracks[k][1].append((mask, (x0, y0, x1, y1)) if visible else None)
            fname = f"{vname}/{t:05d}.jpg"
            cv2.imwrite(os.path.join(image_root, fname), img)
            files.append(fname)
        videos.append({"id": v, "width": width, "height": height, "length": length, "file_names": files})
        for cat, frames in tracks.values():
            segs, areas, bboxes = [], [], []
            for f in frames:
                if f is None:
                    segs.append(None), areas.append(None), bboxes.append(None)
                    continue
                mask, (x0, y0, x1, y1) = f
                segs.append(_rle(mask, kind, (x0, y0, x1, y1)))
                areas.append(float(mask.sum()))
                bboxes.append([x0, y0, x1 - x0, y1 - y0])
            annotations.append(
                {
                    "id": ann_id,
                    "video_id": v,
                    "category_id": cat,
                    "iscrowd": 0,
                    "segmentations": segs,
                    "areas": areas,
                    "bboxes": bboxes,
                    "width": width,
                    "height": height,
                    "length": length,
                }
            )
            ann_id += 1
    gt = {"videos": videos, "categories": CATEGORIES, "info": {}, "licenses": []}
    if with_annotations:
        gt["annotations"] = annotations
    json_file = os.path.join(root, f"{name}.json")
    with open(json_file, "w") as f:
        json.dump(gt, f)
    return json_file, image_root, gt
