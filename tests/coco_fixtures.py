"""Write a COCO-format instance segmentation image set from a YouTube-VIS-format JSON (every annotated frame
becomes an image, every non-null segmentation an instance), e.g. from projects.data.synthetic."""

from __future__ import annotations

import json

import pycocotools.mask as mask_util


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
