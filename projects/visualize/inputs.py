"""What the viewer draws: a dataset's videos (frames, size) with predicted and ground-truth tracks.

Results and ground truth are read and checked by :mod:`projects.evaluation.ytvis_format` (the evaluator's own
reader), so the viewer accepts and refuses exactly what the evaluation does: polygons, compressed and
uncompressed RLE, ``null`` frames; an unknown video id, a corrupt RLE or a mask of another size is a
``ValueError`` naming the file and entry. Masks stay compressed RLE until a frame is drawn.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from projects.data.ytvis import read_json_object
from projects.evaluation.ytvis_format import YTVISGroundTruth, load_ground_truth, load_results

__all__ = ["Track", "VideoView", "resolve_dataset", "load_dataset", "prediction_tracks", "ground_truth_tracks"]


@dataclass
class Track:
    """One track to draw: ``segmentations[t]`` is a compressed RLE of the video's size or ``None``."""

    track_id: int
    category: str
    score: Optional[float]  # None for ground truth
    segmentations: List[Optional[Dict[str, Any]]]


@dataclass
class VideoView:
    """A video of the dataset: ``frames`` are full paths; ``name`` is its frame folder (for file names)."""

    video_id: Any
    name: str
    height: int
    width: int
    frames: List[str]
    predictions: List[Track] = field(default_factory=list)
    ground_truth: List[Track] = field(default_factory=list)


def resolve_dataset(spec: str) -> Tuple[str, str]:
    """``--dataset`` -> ``(json_file, image_root)``: a registered dataset name (its ``MetadataCatalog``
    ``json_file`` / ``image_root``; the synthetic sets are generated on first use), ``JSON:IMAGE_ROOT`` or
    ``NAME=JSON:IMAGE_ROOT`` (as ``train_net.py --dataset``)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    import projects.data  # noqa: F401  (registers the builtin datasets)

    if spec not in DatasetCatalog.list():
        json_file, sep, image_root = spec.partition("=")[2 if "=" in spec else 0].rpartition(":")
        if not sep or not json_file or not image_root:
            raise ValueError(
                f"--dataset {spec!r} is neither a registered dataset (e.g. synthetic_vis_val) nor JSON:IMAGE_ROOT"
            )
        return json_file, image_root
    meta = MetadataCatalog.get(spec)
    json_file, image_root = meta.get("json_file", None), meta.get("image_root", None)
    if json_file is None or image_root is None:
        raise ValueError(f"--dataset {spec}: the dataset has no json_file / image_root in its metadata")
    if not os.path.isfile(json_file):
        DatasetCatalog.get(spec)  # generates the synthetic sets; names the missing file for the others
    return json_file, image_root


def load_dataset(json_file: str, image_root: str) -> Tuple[Dict[str, Any], Dict[Any, VideoView]]:
    """Read a YouTube-VIS JSON: ``(data, {video id: VideoView without tracks})`` in file order."""
    data = read_json_object(json_file, "'videos' and 'categories'")
    videos: Dict[Any, VideoView] = {}
    for i, v in enumerate(data.get("videos") if isinstance(data.get("videos"), list) else []):
        if not isinstance(v, dict) or not {"id", "height", "width", "file_names"} <= set(v):
            raise ValueError(f"{json_file}: videos[{i}] needs 'id', 'height', 'width' and 'file_names'")
        folder = os.path.dirname(v["file_names"][0]) if v["file_names"] else ""
        videos[v["id"]] = VideoView(
            video_id=v["id"],
            name=folder.replace("/", "_").replace(os.sep, "_") or f"video_{v['id']}",
            height=int(v["height"]),
            width=int(v["width"]),
            frames=[os.path.join(image_root, f) for f in v["file_names"]],
        )
    if not videos:
        raise ValueError(f"{json_file}: no 'videos' (a YouTube-VIS video dataset is needed)")
    return data, videos


def _gt_header(data: Dict[str, Any], annotations: Sequence[Any], json_file: str) -> YTVISGroundTruth:
    subset = {k: v for k, v in data.items() if k != "annotations"}
    if annotations is not None:
        subset["annotations"] = list(annotations)
    return load_ground_truth(subset, name=json_file)


def _per_video_track(records: List[Dict[str, Any]], track_ids: List[int], names: Dict[Any, str], scored: bool):
    out: Dict[Any, List[Track]] = {}
    for record, tid in zip(records, track_ids):
        out.setdefault(record["video_id"], []).append(
            Track(
                tid,
                names.get(record["category_id"], str(record["category_id"])),
                float(record["score"]) if scored else None,
                record["segmentations"],
            )
        )
    return out


def prediction_tracks(results_file: str, data: Dict[str, Any], json_file: str) -> Dict[Any, List[Track]]:
    """The checked predictions of ``results_file`` per video id. Track id: the entry's ``track_id`` when it has
    one, else its 1-based rank among its video's entries in file order (a results.json is score-sorted)."""
    gt = _gt_header(data, (), json_file)
    records = load_results(results_file, gt)
    with open(results_file) as f:
        raw = json.load(f)  # valid: load_results read it
    ranks: Dict[Any, int] = {}
    entry_track_ids = []
    for entry in raw:
        ranks[entry["video_id"]] = ranks.get(entry["video_id"], 0) + 1
        tid = entry.get("track_id")
        entry_track_ids.append(tid if isinstance(tid, int) and not isinstance(tid, bool) else ranks[entry["video_id"]])
    track_ids = [entry_track_ids[r["id"] - 1] for r in records]  # record id = entry index + 1
    return _per_video_track(records, track_ids, gt.categories, scored=True)


def ground_truth_tracks(data: Dict[str, Any], json_file: str, video_ids: Sequence[Any]) -> Dict[Any, List[Track]]:
    """The checked GT annotations of ``video_ids`` per video id; track id = 1-based index within the video."""
    if not isinstance(data.get("annotations"), list):
        raise ValueError(f"{json_file} has no 'annotations': there is no ground truth to show")
    keep = set(video_ids)
    anns = [a for a in data["annotations"] if isinstance(a, dict) and a.get("video_id") in keep]
    gt = _gt_header(data, anns, json_file)
    counts: Dict[Any, int] = {}
    track_ids = []
    for r in gt.tracks:  # grouped by video, file order within a video
        counts[r["video_id"]] = counts.get(r["video_id"], 0) + 1
        track_ids.append(counts[r["video_id"]])
    return _per_video_track(gt.tracks, track_ids, gt.categories, scored=False)
