"""Repair of detectron2's ``metrics.json`` (one JSON object per line, appended by ``JSONWriter``) on resume.

``JSONWriter`` appends and fsyncs each line, but a kill inside that write (or a crash before the page cache
reaches the disk) can leave a truncated last line, and the iterations run after the last checkpoint are run
again after ``--resume``, which would duplicate their records. :func:`truncate_metrics_for_resume` keeps the
longest prefix of complete, parsable records whose ``iteration`` is below the resumed start iteration and cuts
the file there *in place* (``os.truncate``: an already-open append handle keeps writing at the new end).
"""

from __future__ import annotations

import json
import logging
import os
from typing import List, Optional, Tuple

__all__ = ["truncate_metrics_for_resume"]

logger = logging.getLogger(__name__)


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
