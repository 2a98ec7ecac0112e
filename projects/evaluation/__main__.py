"""``python -m projects.evaluation GT.json RESULTS.json [--per-class] [--strict]``: YouTube-VIS metrics as one
JSON line.

stdout holds exactly one line, ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"}`` as fractions
(-1 when undefined), plus ``"per_class": {name: AP}`` with ``--per-class``. pycocotools' table goes to stderr.
Inputs the official evaluation scores but that look wrong are scored the same way, each kind reported by one
``warning: ...`` line on stderr (exact duplicate predictions included: their count and an example);
``--strict`` turns them into errors. Malformed input (corrupt RLEs or polygons, scores that are not finite JSON
numbers, video ids that are not integers, ...) exits with status 1 and a one-line ``error: ...`` on stderr
naming the file and the entry.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from .cli_report import run_reporting
from .ytvis_eval import evaluate_ytvis

CLI_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m projects.evaluation", description="YouTube-VIS evaluation (official metric rules)."
    )
    parser.add_argument("gt", help="ground-truth JSON (YouTube-VIS format, with annotations)")
    parser.add_argument("results", help="results JSON: list of {video_id, category_id, score, segmentations}")
    parser.add_argument("--per-class", action="store_true", help="also report AP per category name")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse inputs that the official evaluation scores with a warning here (segmentations "
        "lists of the wrong length, foreign categories, GT annotation id 0, duplicate GT ids, exact duplicate "
        "predictions, ids that are booleans or floats)",
    )
    args = parser.parse_args(argv)

    def run() -> int:
        metrics = evaluate_ytvis(args.gt, args.results, log=sys.stderr, strict=args.strict)
        out = {k: metrics[k] for k in CLI_KEYS}
        if args.per_class:
            out["per_class"] = metrics["per_class"]
        print(json.dumps(out))
        return 0

    return run_reporting(run, exit_code=1)


if __name__ == "__main__":
    sys.exit(main())
