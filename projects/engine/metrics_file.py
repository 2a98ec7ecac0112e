"""Metrics files: strict JSON writing, and repair of detectron2's ``metrics.json`` on resume.

Strict JSON: Python's ``json`` writes undefined values (NaN, e.g. APl without large objects, or a diverged
loss) as the bare tokens ``NaN`` / ``Infinity``, which strict parsers (``jq``, JavaScript, most languages)
refuse. :func:`dumps_strict` writes ``null`` for every non-finite float and is what every metrics writer uses:
the evaluator's ``inference/<dataset>/metrics.json`` and, through :class:`StrictJSONWriter` /
:func:`strict_default_writers`, the training ``metrics.json``.

Repair on resume: detectron2's ``metrics.json`` is one JSON object per line, appended by ``JSONWriter``.

``JSONWriter`` appends and fsyncs each line, but a kill inside that write (or a crash before the page cache
reaches the disk) can leave a truncated last line, and the iterations run after the last checkpoint are run
again after ``--resume``, which would duplicate their records. :func:`truncate_metrics_for_resume` keeps the
longest prefix of complete, parsable records whose ``iteration`` is below the resumed start iteration and cuts
the file there *in place* (``os.truncate``: an already-open append handle keeps writing at the new end).
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, List, Optional, Tuple

from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter

__all__ = [
    "StrictJSONWriter",
    "dumps_strict",
    "read_segm_metrics",
    "strict_default_writers",
    "to_strict_json",
    "truncate_metrics_for_resume",
]

logger = logging.getLogger(__name__)


def to_strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf; numpy floats included) replaced by ``None``."""
    if isinstance(obj, float):  # numpy float64 is a float subclass
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: to_strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_strict_json(v) for v in obj]
    if hasattr(obj, "dtype") and hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy scalars
        return to_strict_json(obj.item())
    return obj


def dumps_strict(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes ``null`` for undefined (non-finite) values: strict JSON, never ``NaN``."""
    return json.dumps(to_strict_json(obj), allow_nan=False, **kwargs)


def read_segm_metrics(path: str) -> dict:
    """The ``"segm"`` record of an evaluator ``metrics.json``, with ``null`` (undefined) read back as NaN."""
    with open(path) as f:
        segm = json.load(f)["segm"]
    return {k: math.nan if v is None else v for k, v in segm.items()}


class _StrictLines:
    """File wrapper for ``JSONWriter``: re-encodes each JSON line it is given with :func:`dumps_strict`."""

    def __init__(self, handle):
        self._handle = handle

    def write(self, text: str) -> int:
        lines = [dumps_strict(json.loads(line), sort_keys=True) if line.strip() else line for line in text.split("\n")]
        return self._handle.write("\n".join(lines))

    def __getattr__(self, name: str):  # flush, fileno, close
        return getattr(self._handle, name)


class StrictJSONWriter(JSONWriter):
    """detectron2's ``JSONWriter`` (same records, one per line) writing ``null`` instead of ``NaN``."""

    def __init__(self, json_file: str, window_size: int = 20):
        super().__init__(json_file, window_size)
        self._file_handle = _StrictLines(self._file_handle)


def strict_default_writers(output_dir: str, max_iter: Optional[int] = None) -> list:
    """detectron2's ``default_writers`` with :class:`StrictJSONWriter` for ``output_dir/metrics.json``.

    For a trainer: ``def build_writers(self): return strict_default_writers(self.cfg.OUTPUT_DIR, self.max_iter)``.
    """
    return [
        CommonMetricPrinter(max_iter),
        StrictJSONWriter(os.path.join(output_dir, "metrics.json")),
        TensorboardXWriter(output_dir),
    ]


def _line_problem(line: bytes, complete: bool) -> Tuple[Optional[str], Optional[dict]]:
    if not complete:
        return "truncated (no newline: its write was interrupted)", None
    try:
        record = json.loads(line)
    except ValueError as e:
        return f"not valid JSON ({e})", None
    if not isinstance(record, dict):
        return "not a JSON object", None
    return None, record


def truncate_metrics_for_resume(path: str, start_iter: int) -> Tuple[int, int]:
    """Cut ``path`` before its first truncated/unparsable line or record with ``iteration >= start_iter``.

    Returns ``(lines kept, lines dropped)``; a missing file is ``(0, 0)``. Logs what was dropped, as a warning
    naming the file and line when a line was truncated or corrupt (not just re-run iterations).
    """
    if not os.path.isfile(path):
        return 0, 0
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    complete = [True] * (len(lines) - 1) + [False]
    if not lines[-1]:  # the file ends with a newline
        lines, complete = lines[:-1], complete[:-1]
    cut: Optional[int] = None  # index of the first dropped line
    problems: List[str] = []
    for i, (line, done) in enumerate(zip(lines, complete)):
        if not line.strip() and done:
            continue
        problem, record = _line_problem(line, done)
        if problem is not None:
            problems.append(f"line {i + 1} is {problem}")
        elif int(record.get("iteration", -1)) < start_iter:
            continue
        if cut is None:
            cut = i
    if cut is None:
        return len(lines), 0
    offset = sum(len(line) + 1 for line in lines[:cut])
    os.truncate(path, offset)
    dropped = len(lines) - cut
    msg = f"{path}: dropped {dropped} line(s) from line {cut + 1} on (resuming at iteration {start_iter})"
    if problems:
        logger.warning(f"{msg}; {'; '.join(problems)}")
    else:
        logger.info(f"{msg}: records of iterations that are run again")
    return cut, dropped
