"""Reading and checking YouTube-VIS ground truth and results (format: docs/ytvis_format.md).

Both sides are turned into *track records*, the plain dicts that pycocotools' ``COCOeval.evaluateImg`` reads:
``{"id" (>0), "video_id", "category_id", "segmentations": [RLE | None] * length, "frame_areas": [int] * length,
"area": mean non-null non-zero frame area, "iscrowd", "ignore", "score"}``.
Malformed input raises ``ValueError`` (``OSError`` for unreadable files) with a one-line message naming the
file and the entry; every RLE is validated (:mod:`.rle_check`) and every polygon, id and score checked
(:mod:`.entry_check`) before pycocotools or numpy reads it: scores must be finite JSON numbers, ids JSON
integers (a string ``video_id`` "1" is reported as a string, not as an unknown video).

Inputs that the official evaluation scores although they are suspicious are scored the same way with a
:class:`YTVISInputWarning` naming the file, the entries and the problem (``strict=True`` refuses them):

- a ``segmentations`` list longer or shorter than the video (the official IoU pairs frames with ``zip``:
  frames past the shorter list are ignored; a prediction's area still averages all of its own frames);
- a prediction whose ``category_id`` is not a GT category (the official evaluation drops it);
- a GT annotation with ``id`` 0 (the official matching stores the GT id as "matched to", so a match to it is
  never a true positive: it counts as a false positive and the GT stays a miss);
- GT annotations sharing an ``id`` (the official API keeps the last one per id and scores it in place of
  each); ``videos`` or ``categories`` sharing an ``id`` (the last one is used);
- a prediction ``video_id`` / ``category_id`` that is a boolean or an integral float (Python, hence the
  official code, takes it for the integer it equals); a non-integer ``category_id`` (dropped: it never equals a
  GT category);
- exact duplicate predictions (same ``video_id``, ``category_id``, ``score``, ``segmentations``): each repeat
  is a false positive; reported once with the count and an example.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pycocotools.mask as mask_util

from .entry_check import exact_duplicates, id_problem, is_int, json_kind, json_repr, polygon_problem, score_problem
from .rle_check import check_rles

RLE = Dict[str, Any]
JsonInput = Union[str, "os.PathLike[str]", dict, list]

__all__ = ["YTVISGroundTruth", "YTVISInputWarning", "load_ground_truth", "load_results", "to_rle", "mean_nonzero_area"]

_LISTED = 10  # entries named in one warning


class YTVISInputWarning(UserWarning):
    """An input the official evaluation scores, but which is probably a mistake (see the module docstring)."""


class _Findings:
    """Collects one kind of lenient-mode finding per file and emits it as a single warning (or error)."""

    def __init__(self, source: str, strict: bool):
        self.source, self.strict = source, strict
        self.found: Dict[str, List[str]] = {}

    def add(self, problem: str, entry: str) -> None:
        if self.strict:
            raise ValueError(f"{self.source}: {entry}: {problem} (refused by --strict)")
        self.found.setdefault(problem, []).append(entry)

    def emit(self) -> None:
        for problem, entries in self.found.items():
            listed = ", ".join(entries[:_LISTED]) + (
                f", ... ({len(entries) - _LISTED} more)" if len(entries) > _LISTED else ""
            )
            warnings.warn(f"{self.source}: {problem}: {listed}", YTVISInputWarning, stacklevel=3)


@dataclass
class YTVISGroundTruth:
    """Parsed ground truth: ``videos`` id -> (height, width, length), ``categories`` id -> name."""

    source: str
    videos: Dict[int, Tuple[int, int, int]]
    categories: Dict[int, str]
    tracks: List[Dict[str, Any]] = field(default_factory=list)
    has_annotations: bool = False


def _read_json(data: JsonInput, what: str, name: Optional[str] = None) -> Tuple[Any, str]:
    """Return ``(parsed JSON, name used in messages)``; in-memory dicts/lists pass through (named ``name``)."""
    if isinstance(data, (dict, list)):
        return data, name or f"<in-memory {what}>"
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


def to_rle(segm: Any, height: int, width: int, validate: bool = True) -> Optional[RLE]:
    """Polygons / uncompressed RLE / compressed RLE / null -> compressed RLE (or ``None`` for null).

    Conversion follows ``annToRLE`` of the official API (``frPyObjects`` with the video's size, polygons
    merged). RLEs are validated first (``validate=False``: the caller already did). Masks whose size is not
    the video's raise ``ValueError`` (the official code would silently compute a meaningless IoU).
    """
    if not segm:
        return None
    if validate and isinstance(segm, dict):
        problem = check_rles([segm])[0]
        if problem:
            raise ValueError(problem)
    if isinstance(segm, list):
        problem = polygon_problem(segm)
        if problem:
            raise ValueError(problem)
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


def _areas(rles: List[RLE]) -> List[int]:
    """``mask_util.area`` of many RLEs, in chunks of 255: pycocotools (with numpy 2) overflows a uint8 counter
    on lists of 256 or more, i.e. on every video of 256+ frames."""
    return [int(a) for i in range(0, len(rles), 255) for a in mask_util.area(rles[i : i + 255])]


def _check_entry_rles(segms: list, where: str) -> None:
    """Validate all RLE dicts of one entry in one vectorised pass; ``ValueError`` names the first bad frame."""
    frames = [t for t, segm in enumerate(segms) if segm and isinstance(segm, dict)]
    for t, problem in zip(frames, check_rles([segms[t] for t in frames])):
        if problem:
            raise ValueError(f"{where}: bad segmentation in frame {t}: {problem}")


def _check_all_rles(entries: list, where) -> None:
    """Validate the RLEs of every entry before any is converted, so a corrupt mask is refused at once."""
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and isinstance(entry.get("segmentations"), list):
            _check_entry_rles(entry["segmentations"], where(i))


def _track_record(entry: dict, video: Tuple[int, int, int], where: str, findings: _Findings) -> Dict[str, Any]:
    """Common part of GT and result records: RLEs and per-frame areas (RLEs checked by the caller first).

    A list whose length is not the video's is kept as it is (official ``zip`` pairing) and reported.
    """
    height, width, length = video
    segms = entry["segmentations"]
    if not isinstance(segms, list):
        raise ValueError(f"{where}: 'segmentations' must be a list, got {json_kind(segms)}")
    if len(segms) != length:
        findings.add(
            "'segmentations' length differs from the video length (frames are paired up to the "
            "shorter one, as the official evaluation does)",
            f"{where.rsplit(': ', 1)[-1]} ({len(segms)} entries, video {entry['video_id']} has {length} frames)",
        )
    rles = []
    for t, segm in enumerate(segms):
        try:
            rles.append(to_rle(segm, height, width, validate=False))
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise ValueError(f"{where}: bad segmentation in frame {t}: {e}") from None
    present = [r for r in rles if r is not None]
    present_areas = iter(_areas(present))
    frame_areas = [next(present_areas) if r is not None else 0 for r in rles]
    return {
        "video_id": entry["video_id"],
        "category_id": entry["category_id"],
        "segmentations": rles,
        "frame_areas": frame_areas,
    }


def _require(obj: Any, keys: Sequence[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {json_kind(obj)}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ValueError(f"{where}: missing required key(s) {missing}")


def _require_int_id(value: Any, key: str, where: str, reference: str = "YouTube-VIS") -> None:
    problem = id_problem(value, key, reference)
    if problem:
        raise ValueError(f"{where}: {problem[0]}")


def _count(value: Any, key: str, where: str, minimum: int) -> int:
    """A video's height / width / length: an integer >= ``minimum`` (integral floats accepted)."""
    if not (is_int(value) or (json_kind(value) == "a float" and float(value).is_integer())) or value < minimum:
        raise ValueError(f"{where}: '{key}' must be an integer >= {minimum}, got {json_repr(value)}")
    return int(value)


def load_ground_truth(gt: JsonInput, strict: bool = False, name: Optional[str] = None) -> YTVISGroundTruth:
    """Parse and check a YouTube-VIS GT JSON (path or dict).

    GT areas for the area ranges come from the JSON's ``areas`` field as in the official code (computed from
    the masks when the field is absent). Crowd tracks (``iscrowd`` = 1) get ``ignore`` = 1. Records keep
    positive ids except for annotations whose JSON ``id`` is 0, which keep 0 (official matching, see module
    docstring); ``strict`` refuses those and length mismatches instead of warning. ``name`` names an
    in-memory ``gt`` in messages (e.g. the JSON file it was read from).
    """
    data, source = _read_json(gt, "ground-truth", name)
    findings = _Findings(f"ground truth {source}", strict)
    _require(data, ["videos", "categories"], f"ground truth {source}")
    for key in ("videos", "categories", "annotations"):
        if not isinstance(data.get(key, []), list):
            raise ValueError(f"ground truth {source}: '{key}' must be a list")
    videos: Dict[int, Tuple[int, int, int]] = {}
    for i, v in enumerate(data["videos"]):
        where = f"ground truth {source}: videos[{i}]"
        _require(v, ["id", "height", "width"], where)
        _require_int_id(v["id"], "id", where)
        if "length" not in v and "file_names" not in v:
            raise ValueError(f"{where}: needs 'length' or 'file_names'")
        if "length" not in v and not isinstance(v["file_names"], list):
            raise ValueError(f"{where}: 'file_names' must be a list, got {json_kind(v['file_names'])}")
        length = v["length"] if "length" in v else len(v["file_names"])
        size = tuple(_count(value, key, where, 1) for key, value in (("height", v["height"]), ("width", v["width"])))
        if v["id"] in videos:
            findings.add(
                "video id used more than once in 'videos' (the official evaluation uses the last)",
                f"videos[{i}] (id {v['id']})",
            )
        videos[v["id"]] = (*size, _count(length, "length", where, 0))
    categories: Dict[int, str] = {}
    for i, c in enumerate(data["categories"]):
        where = f"ground truth {source}: categories[{i}]"
        _require(c, ["id", "name"], where)
        _require_int_id(c["id"], "id", where)
        if c["id"] in categories:
            findings.add(
                "category id used more than once (the official evaluation keeps the last name)",
                f"categories[{i}] (id {c['id']})",
            )
        categories[c["id"]] = str(c["name"])
    result = YTVISGroundTruth(source, videos, categories, has_annotations="annotations" in data)
    _check_all_rles(data.get("annotations") or [], lambda i: f"ground truth {source}: annotations[{i}]")
    for i, ann in enumerate(data.get("annotations") or []):
        where = f"ground truth {source}: annotations[{i}]"
        _require(ann, ["video_id", "category_id", "segmentations"], where)
        _require_int_id(ann["video_id"], "video_id", where, "'videos'")
        _require_int_id(ann["category_id"], "category_id", where, "'categories'")
        if ann["video_id"] not in videos:
            raise ValueError(f"{where}: video id {ann['video_id']} is not in 'videos'")
        if ann["category_id"] not in categories:
            raise ValueError(f"{where}: category id {ann['category_id']} is not in 'categories'")
        record = _track_record(ann, videos[ann["video_id"]], where, findings)
        areas = ann.get("areas")
        if areas is not None and (
            not isinstance(areas, list) or not all(a is None or score_problem(a) is None for a in areas)
        ):
            raise ValueError(f"{where}: 'areas' must be a list of numbers or nulls, got {json_repr(areas)}")
        iscrowd = ann.get("iscrowd", 0)
        if isinstance(iscrowd, str) or iscrowd not in (0, 1):
            raise ValueError(f"{where}: 'iscrowd' must be 0 or 1, got {json_repr(iscrowd)}")
        iscrowd = int(iscrowd)
        zero_id = "id" in ann and ann["id"] == 0
        if zero_id:
            findings.add(
                "annotation id 0 can never be matched by the official evaluation (a prediction on it "
                "counts as a false positive, the track as missed)",
                f"annotations[{i}]",
            )
        record.update(
            id=0 if zero_id else i + 1,
            area=mean_nonzero_area(record["frame_areas"] if areas is None else areas),
            iscrowd=iscrowd,
            ignore=iscrowd,
            score=1.0,
        )
        result.tracks.append(record)
    result.tracks = _official_gt_order(data.get("annotations") or [], result.tracks, findings)
    findings.emit()
    return result


def _official_gt_order(annotations: list, tracks: List[Dict[str, Any]], findings: _Findings) -> List[Dict[str, Any]]:
    """GT records in the order and multiplicity of the official evaluation.

    The official API indexes annotations by their JSON ``id`` and reloads them by id, video by video (sorted
    video ids, file order within a video): an id used by several annotations stands for the *last* of them
    at each of its positions (the others are never scored). Reported as a finding.
    """
    last: Dict[Any, int] = {}
    for i, ann in enumerate(annotations):
        if isinstance(ann.get("id"), (int, float, str)):
            last[ann["id"]] = i
    out = list(tracks)
    for i, ann in enumerate(annotations):
        j = last.get(ann.get("id"), i) if isinstance(ann.get("id"), (int, float, str)) else i
        if j != i:
            findings.add(
                "annotation id used more than once: the official evaluation scores the last annotation "
                "with that id in place of each of them",
                f"annotations[{i}] (id {ann['id']!r}, replaced by annotations[{j}])",
            )
            out[i] = tracks[j]
    order = sorted(range(len(out)), key=lambda i: annotations[i]["video_id"])
    return [out[i] for i in order]


def load_results(
    results: JsonInput, gt: YTVISGroundTruth, strict: bool = False, name: Optional[str] = None
) -> List[Dict[str, Any]]:
    """Parse and check a results list (path or list) against the ground truth.

    Raises ``ValueError`` naming the results file and the offending entries for unknown videos (the official
    evaluation refuses them too), video ids that are not integers, scores that are not finite numbers
    (:mod:`.entry_check`) and malformed entries or masks. Scored the official way, each with a
    :class:`YTVISInputWarning` (``strict`` refuses them): predictions of categories outside the GT (dropped),
    ``segmentations`` whose length is not the video's (paired with ``zip``), ids that are booleans or integral
    floats (taken as the integer) and exact duplicates (each repeat is a false positive). Areas are the RLE
    areas (official ``loadRes``). ``name`` names an in-memory ``results`` list in messages.
    """
    data, source = _read_json(results, "results", name)
    name = f"results {source}"
    findings = _Findings(name, strict)
    if not isinstance(data, list):
        raise ValueError(f"{name}: expected a JSON list of predictions, got {json_kind(data)}")
    for i, entry in enumerate(data):
        _require(entry, ["video_id", "category_id", "score", "segmentations"], f"{name}: entry {i}")
    reference = f"the ground truth {gt.source}"
    video_id_problems = [id_problem(e["video_id"], "video_id", reference) for e in data]
    _refuse_first(
        name, [(i, p[0]) for i, p in enumerate(video_id_problems) if p and not p[1]], "entries with such a video_id"
    )
    unknown_videos = sorted({str(e["video_id"]) for e in data if e["video_id"] not in gt.videos})
    if unknown_videos:
        raise ValueError(f"{name}: video id(s) {', '.join(unknown_videos)} not in the ground truth {gt.source}")
    score_problems = [score_problem(e["score"]) for e in data]
    _refuse_first(
        name,
        [(i, f"(video_id {json_repr(data[i]['video_id'])}): {p}") for i, p in enumerate(score_problems) if p],
        "entries with a bad score",
        separator=" ",
    )
    _check_all_rles(data, lambda i: f"{name}: entry {i}")
    if strict:
        cats = (e["category_id"] for e in data)
        unknown_cats = sorted({str(c) for c in cats if is_int(c) and c not in gt.categories})
        if unknown_cats:
            raise ValueError(
                f"{name}: category id(s) {', '.join(unknown_cats)} not in the ground-truth categories of "
                f"{gt.source} (refused by --strict)"
            )
    kept = []
    for i, entry in enumerate(data):
        for key in ("video_id", "category_id"):
            problem = id_problem(entry[key], key, reference)
            if problem and problem[1]:
                findings.add(
                    f"a {key} that is a boolean or a float is taken for the integer it equals (as the official "
                    "evaluation does)",
                    f"entry {i} ({key} {json_repr(entry[key])})",
                )
        problem = id_problem(entry["category_id"], "category_id", reference)
        if problem and not problem[1]:
            findings.add(
                "predictions whose category_id is not an integer never match a ground-truth category and are "
                "dropped (as the official evaluation does)",
                f"entry {i} ({problem[0]})",
            )
        elif entry["category_id"] not in gt.categories:
            findings.add(
                f"predictions with a category_id that is not a ground-truth category of {gt.source} "
                "are dropped (as the official evaluation does)",
                f"entry {i} (category_id {entry['category_id']!r})",
            )
        else:
            kept.append(i)
    _report_duplicates(name, data, kept, strict)
    tracks = []
    for i in kept:  # dropped entries are never scored; their masks were checked with all others
        entry = data[i]
        record = _track_record(entry, gt.videos[entry["video_id"]], f"{name}: entry {i}", findings)
        score = float(entry["score"])
        record.update(id=i + 1, area=mean_nonzero_area(record["frame_areas"]), iscrowd=0, ignore=0, score=score)
        tracks.append(record)
    findings.emit()
    return tracks


def _refuse_first(name: str, problems: List[Tuple[int, str]], what: str, separator: str = ": ") -> None:
    """``ValueError`` on the first ``(entry index, problem)``, with the number of such entries."""
    if problems:
        i, problem = problems[0]
        more = f" ({len(problems)} {what})" if len(problems) > 1 else ""
        raise ValueError(f"{name}: entry {i}{separator}{problem}{more}")


def _report_duplicates(name: str, data: list, kept: List[int], strict: bool) -> None:
    """One warning (an error if ``strict``) with the number of exact duplicates among the scored entries."""
    duplicates = exact_duplicates([data[i] for i in kept])
    if not duplicates:
        return
    repeat, first = kept[duplicates[0][0]], kept[duplicates[0][1]]
    e = data[repeat]
    message = (
        f"{name}: {len(duplicates)} exact duplicate prediction(s) (same video_id, category_id, score and "
        f"segmentations; the official evaluation scores each repeat as a false positive), e.g. entry {repeat} "
        f"repeats entry {first} (video_id {json_repr(e['video_id'])}, category_id {json_repr(e['category_id'])}, "
        f"score {json_repr(e['score'])})"
    )
    if strict:
        raise ValueError(f"{message} (refused by --strict)")
    warnings.warn(message, YTVISInputWarning, stacklevel=3)
