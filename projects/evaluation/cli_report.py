"""How the command-line tools that read YouTube-VIS files report: questionable input as one ``warning: ...`` line
each and malformed input as one ``error: ...`` line (naming the file), both on stderr."""

from __future__ import annotations

import sys
import warnings
from typing import Callable, Tuple, Type

from .ytvis_format import YTVISInputWarning

__all__ = ["INPUT_ERRORS", "run_reporting"]

# What malformed JSON / RLE / files raise in the readers (a bug elsewhere keeps its traceback).
INPUT_ERRORS: Tuple[Type[BaseException], ...] = (OSError, ValueError, KeyError, TypeError, OverflowError)


def run_reporting(
    fn: Callable[[], int], exit_code: int, errors: Tuple[Type[BaseException], ...] = INPUT_ERRORS, reraise=False
) -> int:
    """``fn()``; each :class:`YTVISInputWarning` it raises -> a ``warning:`` line (other warnings shown as usual),
    an exception of ``errors`` -> one ``error:`` line and ``exit_code`` (``reraise``: its traceback instead)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", YTVISInputWarning)
        try:
            return fn()
        except errors as e:
            if reraise:
                raise
            print(f"error: {' '.join(str(e).split()) or type(e).__name__}", file=sys.stderr)
            return exit_code
        finally:
            for w in caught:
                if issubclass(w.category, YTVISInputWarning):
                    print(f"warning: {w.message}", file=sys.stderr)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
