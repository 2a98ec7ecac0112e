"""Crash-safe file writes: a reader sees the old complete file or the new complete file, never a truncated one.

The data go to a hidden temporary file in the destination's directory (same file system, so the final
``os.replace`` is an atomic rename), are flushed and ``fsync``-ed, then renamed over the destination; the
directory is fsync-ed too so that the rename survives a power loss. A ``kill -9`` at any moment leaves at
most a stale ``.NAME.partial-*`` file, which :func:`remove_stale_partials` deletes and nothing else reads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from typing import IO, Iterator, List, Union

__all__ = ["atomic_open", "atomic_write", "remove_stale_partials", "AtomicWritePathManager", "PARTIAL_MARK"]

logger = logging.getLogger(__name__)

PARTIAL_MARK = ".partial-"
_UMASK = os.umask(0o022)  # read once at import (os.umask can only be read by setting it)
os.umask(_UMASK)
_PARTIAL_RE = re.compile(r"^\..+" + re.escape(PARTIAL_MARK) + r"[A-Za-z0-9_]+$")


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb", encoding: str = "utf-8") -> Iterator[IO]:
    """``with atomic_open(path, "wb") as f: ...`` replaces ``path`` only when the block completes.

    ``mode`` is ``"w"`` (text) or ``"wb"``. On an exception inside the block the temporary file is removed and
    ``path`` is left untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', got {mode!r}")
    path = os.path.abspath(path)
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}{PARTIAL_MARK}", dir=directory)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": encoding})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):  # keep the permissions a user gave the previous version
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def atomic_write(path: str, data: Union[bytes, str]) -> None:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically (remote paths: plain PathManager write)."""
    if not _is_local(path):
        from detectron2.utils.file_io import PathManager

        opener = PathManager.open
    else:
        opener = atomic_open
    with opener(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def remove_stale_partials(directory: str) -> List[str]:
    """Delete the temporary files an interrupted :func:`atomic_open` left in ``directory``; returns their paths.

    Call only when no other process writes into ``directory`` (e.g. on the main process before resuming).
    """
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in os.listdir(directory):
        if _PARTIAL_RE.match(name):
            path = os.path.join(directory, name)
            with contextlib.suppress(OSError):
                os.unlink(path)
                removed.append(path)
    if removed:
        logger.info(f"Removed {len(removed)} partial file(s) left by an interrupted write: {removed}")
    return removed


class AtomicWritePathManager:
    """Wraps an iopath ``PathManager`` so that ``open(path, "w"/"wb")`` on a local path is :func:`atomic_open`.

    Every other call (reads, ``exists``, ``ls``, ``rm``, remote paths) goes to the wrapped manager. Used as a
    checkpointer's ``path_manager``, it makes both the checkpoint and ``last_checkpoint`` writes atomic.
    """

    def __init__(self, path_manager):
        self._path_manager = path_manager

    def open(self, path: str, mode: str = "r", **kwargs):
        if mode in ("w", "wb") and _is_local(path):
            return atomic_open(path, mode, **({"encoding": kwargs["encoding"]} if "encoding" in kwargs else {}))
        return self._path_manager.open(path, mode, **kwargs)

    def __getattr__(self, name):
        return getattr(self._path_manager, name)


def _is_local(path: str) -> bool:
    return "://" not in str(path)
