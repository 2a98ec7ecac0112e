"""``python -m projects.evaluation GT.json RESULTS.json [--per-class]``: YouTube-VIS metrics as one JSON line.

stdout holds exactly one line, ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"}`` as fractions
(-1 when undefined), plus ``"per_class": {name: AP}`` with ``--per-class``. pycocotools' table goes to stderr.
Malformed input exits with status 1 and a one-line ``error: ...`` on stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from .ytvis_eval import evaluate_ytvis

CLI_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m projects.evaluation",
                                     description="YouTube-VIS evaluation (official metric rules).")
    parser.add_argument("gt", help="ground-truth JSON (YouTube-VIS format, with annotations)")
    parser.add_argument("results", help="results JSON: list of {video_id, category_id, score, segmentations}")
    parser.add_argument("--per-class", action="store_true", help="also report AP per category name")
    args = parser.parse_args(argv)
    try:
        metrics = evaluate_ytvis(args.gt, args.results, log=sys.stderr)
    except (OSError, ValueError, KeyError, TypeError) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1
    out = {k: metrics[k] for k in CLI_KEYS}
    if args.per_class:
        out["per_class"] = metrics["per_class"]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
