"""Write a COCO-format instance segmentation image set from a YouTube-VIS-format JSON (every annotated frame
becomes an image, every non-null segmentation an instance), e.g. from projects.data.synthetic; and a painted image
set whose pixel values code the object ids (``write_painted_coco``)."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util

from projects.data.synthetic_shapes import SYNTHETIC_CATEGORIES


def ytvis_to_coco(ytvis_json: str, coco_json: str) -> dict:
    """Convert and write; returns the COCO dict. Segmentations become compressed RLE, boxes XYWH."""
    with open(ytvis_json) as f:
        data = json.load(f)
    images, annotations, image_id = [], [], {}
    for video in data["videos"]:
        for t, name in enumerate(video["file_names"]):
            image_id[(video["id"], t)] = len(images) + 1
            images.append(
                {"id": len(images) + 1, "file_name": name, "height": video["height"], "width": video["width"]}
            )
    for ann in data["annotations"]:
        for t, seg in enumerate(ann["segmentations"]):
            if not seg:
                continue
            h, w = seg["size"]
            rle = mask_util.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
            area = float(mask_util.area(rle))
            if area == 0:
                continue
            rle["counts"] = rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id[(ann["video_id"], t)],
                    "category_id": ann["category_id"],
                    "segmentation": rle,
                    "area": area,
                    "bbox": [float(x) for x in mask_util.toBbox(rle)],
                    "iscrowd": 0,
                }
            )
    out = {"images": images, "annotations": annotations, "categories": data["categories"]}
    with open(coco_json, "w") as f:
        json.dump(out, f)
    return out


def write_painted_coco(root, num_images=4, seed=0):
    """Grey-level-coded objects: object k of an image is painted 50*k, so a frame's mask of track k must cover
    pixels of value 50*k wherever the pseudo-video transform moved it (image/mask/id consistency)."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "painted"), exist_ok=True)
    images, annotations = [], []
    for i in range(1, num_images + 1):
        img = np.zeros((72, 96, 3), np.uint8)
        for k, x0 in enumerate((6, 38, 70), start=1):
            y0, w, h = int(rng.integers(4, 30)), 20, int(rng.integers(16, 36))
            img[y0 : y0 + h, x0 : x0 + w] = 50 * k
            poly = [x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]
            segm = (
                [poly]
                if k != 2
                else {
                    "size": [72, 96],
                    "counts": mask_util.encode(np.asfortranarray((img[:, :, 0] == 100).astype(np.uint8)))[
                        "counts"
                    ].decode(),
                }
            )
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": k,
                    "segmentation": segm,
                    "area": float(w * h),
                    "bbox": [x0, y0, w, h],
                    "iscrowd": 0,
                }
            )
        cv2.imwrite(os.path.join(root, "painted", f"{i}.png"), img)
        images.append({"id": i, "file_name": f"{i}.png", "height": 72, "width": 96})
    cats = [{"id": k, "name": n} for k, n in enumerate([c["name"] for c in SYNTHETIC_CATEGORIES[:3]], start=1)]
    path = os.path.join(root, "painted.json")
    json.dump({"images": images, "annotations": annotations, "categories": cats}, open(path, "w"))
    return path, os.path.join(root, "painted")
