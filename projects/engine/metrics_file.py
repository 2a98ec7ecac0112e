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
from typing import Tuple

__all__ = ["truncate_metrics_for_resume"]

logger = logging.getLogger(__name__)


def truncate_metrics_for_resume(path: str, start_iter: int) -> Tuple[int, int]:
    """Cut ``path`` before its first truncated/unparsable line or record with ``iteration >= start_iter``.

    Returns ``(records kept, lines dropped)``; a missing file is ``(0, 0)``. Warns, naming the file and the
    first dropped line, when something other than re-run iterations is dropped.
    """
    if not os.path.isfile(path):
        return 0, 0
    with open(path, "rb") as f:
        data = f.read()
    offset, kept, bad = 0, 0, None
    while offset < len(data):
        end = data.find(b"\n", offset)
        if end < 0:
            bad = f"line {kept + 1} is truncated (no newline: the write was interrupted)"
            break
        line = data[offset:end].strip()
        if line:
            try:
                record = json.loads(line)
            except ValueError as e:
                bad = f"line {kept + 1} is not valid JSON ({e})"
                break
            if not isinstance(record, dict):
                bad = f"line {kept + 1} is not a JSON object"
                break
            if int(record.get("iteration", -1)) >= start_iter:
                break
        kept += 1
        offset = end + 1
    dropped = data[offset:].count(b"\n") + (0 if data.endswith(b"\n") or offset >= len(data) else 1)
    if offset < len(data):
        os.truncate(path, offset)
        msg = f"{path}: dropped {dropped} line(s) from line {kept + 1} on (resuming at iteration {start_iter})"
        if bad:
            logger.warning(f"{msg}: {bad}")
        else:
            logger.info(f"{msg}: records of iterations that are run again")
    return kept, dropped
