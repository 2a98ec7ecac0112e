"""Reading and checking YouTube-VIS ground truth and results (format: DESIGN.md §6).

Both sides are turned into *track records*, the plain dicts that pycocotools' ``COCOeval.evaluateImg`` reads:
``{"id" (>0), "video_id", "category_id", "segmentations": [RLE | None] * length, "frame_areas": [int] * length,
"area": mean non-null non-zero frame area, "iscrowd", "ignore", "score"}``.
Malformed input raises ``ValueError`` (``OSError`` for unreadable files) with a one-line message.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pycocotools.mask as mask_util

RLE = Dict[str, Any]
JsonInput = Union[str, "os.PathLike[str]", dict, list]

__all__ = ["YTVISGroundTruth", "load_ground_truth", "load_results", "to_rle", "mean_nonzero_area"]


@dataclass
class YTVISGroundTruth:
    """Parsed ground truth: ``videos`` id -> (height, width, length), ``categories`` id -> name."""

    source: str
    videos: Dict[int, Tuple[int, int, int]]
    categories: Dict[int, str]
    tracks: List[Dict[str, Any]] = field(default_factory=list)
    has_annotations: bool = False


def _read_json(data: JsonInput, what: str) -> Tuple[Any, str]:
    """Return ``(parsed JSON, name used in error messages)``; in-memory dicts/lists pass through."""
    if isinstance(data, (dict, list)):
        return data, f"<in-memory {what}>"
    path = os.fspath(data)
    with open(path, "rb") as f:  # OSError (e.g. missing file) propagates with the path in its message
        text = f.read()
    try:
        return json.loads(text), path
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{what} file {path} is not valid JSON: {e}") from None


def mean_nonzero_area(areas: Sequence[Optional[float]]) -> float:
    """Official area-range rule: mean of the per-frame areas that are neither null nor zero (0 if none)."""
    nonzero = [a for a in areas if a]
    return float(np.mean(nonzero)) if nonzero else 0.0


def to_rle(segm: Any, height: int, width: int) -> Optional[RLE]:
    """Polygons / uncompressed RLE / compressed RLE / null -> compressed RLE (or ``None`` for null).

    Conversion follows ``annToRLE`` of the official API (``frPyObjects`` with the video's size, polygons
    merged). Masks whose size is not the video's raise ``ValueError`` (the official code would silently
    compute a meaningless IoU).
    """
    if not segm:
        return None
    if isinstance(segm, list):
        rle = mask_util.merge(mask_util.frPyObjects(segm, height, width))
    elif isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        rle = mask_util.frPyObjects(segm, height, width)
    elif isinstance(segm, dict) and isinstance(segm.get("counts"), (str, bytes)):
        rle = segm
    else:
        raise ValueError("expected polygons, an RLE dict or null")
    if [int(s) for s in rle["size"]] != [height, width]:
        raise ValueError(f"mask size {list(rle['size'])} differs from the video size {[height, width]}")
    return rle


def _track_record(entry: dict, video: Tuple[int, int, int], where: str) -> Dict[str, Any]:
    """Common part of GT and result records: RLEs and per-frame areas, with the length checked."""
    height, width, length = video
    segms = entry["segmentations"]
    if not isinstance(segms, list) or len(segms) != length:
        got = len(segms) if isinstance(segms, list) else type(segms).__name__
        raise ValueError(f"{where}: 'segmentations' has length {got} but video {entry['video_id']} "
                         f"has {length} frames")
    rles = []
    for t, segm in enumerate(segms):
        try:
            rles.append(to_rle(segm, height, width))
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise ValueError(f"{where}: bad segmentation in frame {t}: {e}") from None
    present = [r for r in rles if r is not None]
    # pycocotools' area() builds its output from a uint8 count: more than 255 RLEs per call overflow.
    present_areas = iter([a for i in range(0, len(present), 255) for a in mask_util.area(present[i : i + 255]).tolist()])
    frame_areas = [next(present_areas) if r is not None else 0 for r in rles]
    return {"video_id": entry["video_id"], "category_id": entry["category_id"],
            "segmentations": rles, "frame_areas": frame_areas}


def _require(obj: Any, keys: Sequence[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ValueError(f"{where}: missing required key(s) {missing}")


def load_ground_truth(gt: JsonInput) -> YTVISGroundTruth:
    """Parse and check a YouTube-VIS GT JSON (path or dict).

    GT areas for the area ranges come from the JSON's ``areas`` field as in the official code (computed from
    the masks when the field is absent). Crowd tracks (``iscrowd`` = 1) get ``ignore`` = 1.
    """
    data, source = _read_json(gt, "ground-truth")
    _require(data, ["videos", "categories"], f"ground truth {source}")
    for key in ("videos", "categories", "annotations"):
        if not isinstance(data.get(key, []), list):
            raise ValueError(f"ground truth {source}: '{key}' must be a list")
    videos: Dict[int, Tuple[int, int, int]] = {}
    for i, v in enumerate(data["videos"]):
        where = f"ground truth {source}: videos[{i}]"
        _require(v, ["id", "height", "width"], where)
        if "length" not in v and "file_names" not in v:
            raise ValueError(f"{where}: needs 'length' or 'file_names'")
        length = v["length"] if "length" in v else len(v["file_names"])
        videos[v["id"]] = (int(v["height"]), int(v["width"]), int(length))
    categories: Dict[int, str] = {}
    for i, c in enumerate(data["categories"]):
        _require(c, ["id", "name"], f"ground truth {source}: categories[{i}]")
        categories[c["id"]] = str(c["name"])
    result = YTVISGroundTruth(source, videos, categories, has_annotations="annotations" in data)
    for i, ann in enumerate(data.get("annotations") or []):
        where = f"ground truth {source}: annotations[{i}]"
        _require(ann, ["video_id", "category_id", "segmentations"], where)
        if ann["video_id"] not in videos:
            raise ValueError(f"{where}: video id {ann['video_id']} is not in 'videos'")
        if ann["category_id"] not in categories:
            raise ValueError(f"{where}: category id {ann['category_id']} is not in 'categories'")
        record = _track_record(ann, videos[ann["video_id"]], where)
        areas = ann.get("areas")
        iscrowd = int(bool(ann.get("iscrowd", 0)))
        record.update(id=i + 1, area=mean_nonzero_area(record["frame_areas"] if areas is None else areas),
                      iscrowd=iscrowd, ignore=iscrowd, score=1.0)
        result.tracks.append(record)
    return result


def load_results(results: JsonInput, gt: YTVISGroundTruth) -> List[Dict[str, Any]]:
    """Parse and check a results list (path or list) against the ground truth.

    Raises ``ValueError`` naming the offending ids and the results file for unknown videos or categories
    and for ``segmentations`` whose length is not the video's. Areas are the RLE areas (official
    ``loadRes``).
    """
    data, source = _read_json(results, "results")
    if not isinstance(data, list):
        raise ValueError(f"results {source}: expected a JSON list of predictions, got {type(data).__name__}")
    for i, entry in enumerate(data):
        _require(entry, ["video_id", "category_id", "score", "segmentations"], f"results {source}: entry {i}")
    unknown_videos = sorted({str(e["video_id"]) for e in data if e["video_id"] not in gt.videos})
    if unknown_videos:
        raise ValueError(f"results {source}: video id(s) {', '.join(unknown_videos)} not in the ground truth "
                         f"{gt.source}")
    unknown_cats = sorted({str(e["category_id"]) for e in data if e["category_id"] not in gt.categories})
    if unknown_cats:
        raise ValueError(f"results {source}: category id(s) {', '.join(unknown_cats)} not in the ground-truth "
                         f"categories of {gt.source}")
    tracks = []
    for i, entry in enumerate(data):
        where = f"results {source}: entry {i}"
        try:
            score = float(entry["score"])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: score {entry['score']!r} is not a number") from None
        record = _track_record(entry, gt.videos[entry["video_id"]], where)
        record.update(id=i + 1, area=mean_nonzero_area(record["frame_areas"]), iscrowd=0, ignore=0,
                      score=score)
        tracks.append(record)
    return tracks
