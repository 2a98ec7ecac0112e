"""Checks of the values inside ground-truth and results entries that the official evaluation trusts blindly.

Each function returns a one-line problem (or ``None``); :mod:`.ytvis_format` prefixes it with the file and
entry. Values are named as they are spelled in the JSON file (``true``, ``NaN``, ``null``; strings as ``'0.9'``).

- ids (``video_id``, ``category_id``, ...) are JSON integers in YouTube-VIS. A string, null, list or object is
  a different key for the official code (never equal to the integer id); a boolean or an integral float equals
  the integer in Python, so the official code scores it as that id.
- scores must be finite JSON numbers: the official ``np.argsort(-score)`` puts NaN anywhere, and a string or a
  boolean only works by accident of Python's comparisons (or fails deep inside numpy).
- polygons are lists of ``[x1, y1, x2, y2, ...]`` lists of an even number (>= 6) of finite numbers:
  pycocotools' ``frPyObjects`` raises an untyped ``Exception`` on fewer than 4, reads a 4-number polygon as a
  box ``[x, y, w, h]`` and drops an odd last number; rasterising a non-finite or huge coordinate allocates
  memory proportional to the polygon's perimeter (a NaN gets the process killed).
- exact duplicates (same ``video_id``, ``category_id``, ``score`` and ``segmentations``): the official matching
  gives the first the GT track and scores each repeat as a false positive (none on crowd GT).
"""

from __future__ import annotations

import json
import math
from numbers import Integral, Real
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "MAX_POLYGON_PERIMETER",
    "described",
    "exact_duplicates",
    "id_problem",
    "is_int",
    "json_kind",
    "json_repr",
    "polygon_problem",
    "score_problem",
]

# pycocotools rasterises a polygon by walking its boundary at 5x resolution with several int arrays of that
# length: 2e6 px (far beyond any real mask) keeps that under ~200 MB.
MAX_POLYGON_PERIMETER = 2_000_000


def json_repr(value: Any, limit: int = 40) -> str:
    """``value`` as the JSON file spells it (``true``, ``null``, ``NaN``, ``Infinity``; strings quoted as in
    Python, ``'0.9'``), shortened to about ``limit`` characters."""
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else repr(value[: limit - 3]) + "..."
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_kind(value: Any) -> str:
    """``'a string'``, ``'a boolean'``, ``'null'``, ``'a list'``, ``'an object'``, ``'a number'``, ..."""
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, Integral):
        return "an integer"
    if isinstance(value, Real):
        return "a float"
    return f"a {type(value).__name__}"


def described(key: str, value: Any) -> str:
    """``"video_id '1' is a string"``, ``"score true is a boolean"``, ``"score is null"``."""
    return f"{key} is null" if value is None else f"{key} {json_repr(value)} is {json_kind(value)}"


def is_int(value: Any) -> bool:
    """A JSON integer (``bool`` excluded; numpy integers accepted for in-memory inputs)."""
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


def id_problem(value: Any, key: str, reference: str) -> Optional[Tuple[str, bool]]:
    """``(problem, same_as_int)`` when ``value`` is not an integer id, else ``None``.

    ``same_as_int`` is True for booleans and integral floats: Python (hence the official code) takes them for
    the integer ``int(value)``. ``reference`` names the side that uses integers (e.g. "the ground truth").
    """
    if is_int(value):
        return None
    same = isinstance(value, (bool, np.bool_)) or (
        isinstance(value, Real) and math.isfinite(value) and float(value).is_integer()
    )
    return f"{described(key, value)}; {reference} uses integers", same


def score_problem(score: Any) -> Optional[str]:
    """Why ``score`` is not a finite JSON number, or ``None``."""
    if isinstance(score, (bool, np.bool_)) or not isinstance(score, Real):
        return f"{described('score', score)}, not a number"
    if not math.isfinite(score):
        return f"score {json_repr(float(score))} is not a finite number"
    return None


def polygon_problem(polygons: Any) -> Optional[str]:
    """Why ``polygons`` (one frame's list of polygons) cannot be rasterised safely, or ``None``."""
    for j, poly in enumerate(polygons):
        if not isinstance(poly, (list, tuple)):
            return (
                f"polygons must be a list of [x1, y1, x2, y2, ...] lists, got {json_kind(poly)} "
                f"({json_repr(poly)}) as polygon {j}"
            )
        if not all(isinstance(c, Real) and not isinstance(c, (bool, np.bool_)) for c in poly):
            bad = next(c for c in poly if not isinstance(c, Real) or isinstance(c, (bool, np.bool_)))
            return f"polygon {j} has the coordinate {json_repr(bad)}, {json_kind(bad)}, not a number"
        if len(poly) < 6 or len(poly) % 2:
            return f"polygon {j} has {len(poly)} coordinates (an even number, at least 6, is needed)"
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all():
            return f"polygon {j} has the non-finite coordinate {json_repr(float(xy[~np.isfinite(xy)][0]))}"
        steps = np.abs(np.diff(np.concatenate([xy, xy[:1]]), axis=0)).max(axis=1)
        if steps.sum() > MAX_POLYGON_PERIMETER:
            return (
                f"polygon {j} has a perimeter of {steps.sum():.3g} px (coordinates out of scale?); "
                f"rasterising it would take gigabytes"
            )
    return None


def exact_duplicates(entries: Sequence[Dict[str, Any]]) -> List[Tuple[int, int]]:
    """``(repeat index, index of its first occurrence)`` for every entry equal to an earlier one in
    ``video_id``, ``category_id``, ``score`` and ``segmentations`` (ids and scores must be hashable)."""
    groups: Dict[Tuple[Any, Any, Any], List[int]] = {}
    out = []
    for i, e in enumerate(entries):
        group = groups.setdefault((e["video_id"], e["category_id"], e["score"]), [])
        first = next((j for j in group if entries[j]["segmentations"] == e["segmentations"]), None)
        if first is None:
            group.append(i)
        else:
            out.append((i, first))
    return out
