"""YouTube-VIS-format JSON -> detectron2 video dataset dicts, and dataset registration.

Format (YouTube-VIS 2019/2021, OVIS): ``videos[{id, width, height, length, file_names}]``,
``annotations[{id, video_id, category_id, iscrowd, segmentations[T], areas[T], bboxes[T]}]`` (absent in the
valid/test JSON) and ``categories[{id, name}]``. Per-frame segmentations may be uncompressed RLE (official
train.json), compressed RLE, polygons, or ``null`` (object not visible). See docs/interfaces.md for the output.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional

import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils.colormap import colormap

from .errors import DatasetFormatError
from .splits import register_holdout_splits

logger = logging.getLogger(__name__)

__all__ = ["load_ytvis_json", "register_ytvis_instances", "category_metadata"]


def category_metadata(categories: List[Dict[str, Any]]) -> Dict[str, Any]:
    """thing_classes / thing_colors / id mapping for a category list (sorted by id -> contiguous 0..K-1)."""
    cats = sorted(categories, key=lambda c: c["id"])
    palette = colormap(rgb=True, maximum=255)
    return {
        "thing_classes": [c["name"] for c in cats],
        "thing_colors": [c.get("color") or [int(v) for v in palette[i % len(palette)]] for i, c in enumerate(cats)],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(cats)},
    }


def read_json_object(json_file: str, expected: str) -> Dict[str, Any]:
    """Read an annotation file that must hold a JSON object; errors name the file (``expected``: what the object
    should contain, for the message)."""
    if not os.path.isfile(json_file):
        raise DatasetFormatError(json_file, "annotation file does not exist")
    try:
        with open(json_file) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFormatError(json_file, f"not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise DatasetFormatError(json_file, f"top level must be a JSON object with {expected}")
    return data


def _read_json(json_file: str) -> Dict[str, Any]:
    data = read_json_object(json_file, "'videos' and 'categories'")
    for key in ("videos", "categories"):
        if key not in data:
            raise DatasetFormatError(json_file, f"missing required key '{key}'")
    return data


def _to_compressed_rle(segm: Any, height: int, width: int) -> Any:
    """Uncompressed RLE (counts list) -> compressed RLE; compressed RLE and polygons are returned unchanged."""
    if isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        return mask_util.frPyObjects(segm, height, width)
    return segm


def _bbox_of(segm: Any, height: int, width: int) -> List[float]:
    if isinstance(segm, dict):
        return mask_util.toBbox(segm).tolist()
    rles = mask_util.frPyObjects(segm, height, width)
    return mask_util.toBbox(mask_util.merge(rles)).tolist()


def load_ytvis_json(json_file: str, image_root: str, dataset_name: Optional[str] = None) -> List[Dict[str, Any]]:
    """Load a YouTube-VIS-format JSON into one dataset dict per video (see docs/interfaces.md).

    Raises :class:`DatasetFormatError` naming the file (and video/annotation) for malformed input: missing
    keys, empty videos, per-frame lists whose length differs from the video's, unknown video/category ids.
    ``category_id`` in the output is contiguous (0..K-1, categories sorted by id). A JSON without
    ``annotations`` (valid/test split) gives dicts without the ``annotations`` key.
    """
    data = _read_json(json_file)
    id_map = category_metadata(data["categories"])["thing_dataset_id_to_contiguous_id"]
    if dataset_name is not None:
        meta = MetadataCatalog.get(dataset_name)
        if hasattr(meta, "thing_dataset_id_to_contiguous_id") and meta.thing_dataset_id_to_contiguous_id != id_map:
            raise DatasetFormatError(json_file, f"categories differ from those registered for '{dataset_name}'")

    videos: Dict[int, Dict[str, Any]] = {}
    for v in data["videos"]:
        for key in ("id", "file_names", "height", "width"):
            if key not in v:
                raise DatasetFormatError(json_file, f"video {v.get('id', '?')} is missing required key '{key}'")
        length = len(v["file_names"])
        if length == 0:
            raise DatasetFormatError(json_file, f"video {v['id']} has no frames (empty 'file_names')")
        if "length" in v and v["length"] != length:
            raise DatasetFormatError(
                json_file, f"video {v['id']}: 'length' is {v['length']} but it lists {length} file_names"
            )
        if v["id"] in videos:
            raise DatasetFormatError(json_file, f"video id {v['id']} appears twice")
        videos[v["id"]] = {
            "video_id": v["id"],
            "file_names": [os.path.join(image_root, f) for f in v["file_names"]],
            "height": int(v["height"]),
            "width": int(v["width"]),
            "length": length,
        }

    if "annotations" in data:
        for v in videos.values():
            v["annotations"] = [[] for _ in range(v["length"])]
        track_ids = set()
        for ann in data["annotations"]:
            _add_annotation(json_file, ann, videos, id_map, track_ids)
    return list(videos.values())


def _add_annotation(
    json_file: str, ann: Dict[str, Any], videos: Dict[int, Dict[str, Any]], id_map: Dict[int, int], seen: set
) -> None:
    for key in ("id", "video_id", "category_id", "segmentations"):
        if key not in ann:
            raise DatasetFormatError(json_file, f"annotation {ann.get('id', '?')} is missing required key '{key}'")
    where = f"annotation {ann['id']} (video {ann['video_id']})"
    video = videos.get(ann["video_id"])
    if video is None:
        raise DatasetFormatError(json_file, f"{where} refers to a video id that is not in 'videos'")
    if ann["category_id"] not in id_map:
        raise DatasetFormatError(json_file, f"{where} has category_id {ann['category_id']} not in 'categories'")
    if (ann["video_id"], ann["id"]) in seen:
        raise DatasetFormatError(json_file, f"{where}: annotation id is not unique")
    seen.add((ann["video_id"], ann["id"]))
    length, h, w = video["length"], video["height"], video["width"]
    segms = ann["segmentations"]
    bboxes = ann.get("bboxes") or [None] * length
    for key, values in (("segmentations", segms), ("bboxes", bboxes), ("areas", ann.get("areas") or [None] * length)):
        if len(values) != length:
            raise DatasetFormatError(
                json_file, f"{where}: '{key}' has {len(values)} entries, the video has {length} frames"
            )
    for t, segm in enumerate(segms):
        if not segm:  # null / empty: not visible in frame t
            continue
        segm = _to_compressed_rle(segm, h, w)
        bbox = bboxes[t] if bboxes[t] is not None else _bbox_of(segm, h, w)
        video["annotations"][t].append(
            {
                "id": int(ann["id"]),
                "category_id": id_map[ann["category_id"]],
                "iscrowd": int(ann.get("iscrowd", 0)),
                "bbox": [float(x) for x in bbox],
                "bbox_mode": BoxMode.XYWH_ABS,
                "segmentation": segm,
            }
        )


def register_ytvis_instances(
    name: str,
    json_file: str,
    image_root: str,
    metadata: Optional[Dict[str, Any]] = None,
    holdout_splits: Optional[bool] = None,
) -> None:
    """Register a YouTube-VIS-format dataset under ``name``.

    Categories come from ``metadata`` (the official lists for the builtin datasets) or, when omitted, from the
    JSON itself (read now, so the model's class count is known before loading the videos).
    ``holdout_splits`` (default: when ``name`` ends with ``_train``) also registers the local protocol's
    ``<stem>_train_sub`` / ``<stem>_holdout`` splits (:mod:`projects.data.splits`).
    """
    if metadata is None:
        metadata = category_metadata(_read_json(json_file)["categories"])
    DatasetCatalog.register(name, lambda: load_ytvis_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="ytvis", **metadata)
    if holdout_splits or (holdout_splits is None and name.endswith("_train")):
        register_holdout_splits(name)
