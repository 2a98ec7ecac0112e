#!/usr/bin/env python
"""Where a VIS model's AP goes, as AP: the results re-scored with one part replaced by the ground truth.

    python -m experiments.ap_oracles --gt GT.json RESULTS.json

Each predicted track is matched to the GT object of highest video IoU (any class). Rows:

- ``as is``: the results' own AP (the project's YouTube-VIS evaluator);
- ``class``: every track matched with video IoU > 0.1 takes its object's category (classification errors);
- ``linking``: for every GT object, its best-matched track's masks are replaced frame by frame by the predicted
  mask of highest IoU with the object among all tracks of the video, kept when that IoU >= 0.5 (association:
  the masks exist, in other tracks);
- ``masks``: every predicted frame mask with IoU >= 0.5 with its track's object in that frame is replaced by the
  GT mask (segmentation quality of the found objects);
- ``masks + class``: both.

The gap between a row and ``as is`` is what perfect classification / association / masks would add to the
same detections; where the ``masks`` row is far above the others, the masks, not the tracker, limit the AP.
"""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pycocotools.mask as mask_util

from projects.evaluation.ytvis_eval import evaluate_ytvis, video_iou
from projects.evaluation.ytvis_format import to_rle

MATCH_IOU = 0.5  # frame-mask IoU at which a predicted mask counts as the object's
CLASS_IOU = 0.1  # video IoU at which a track takes its object's class


def _json_rle(rle: Optional[dict]) -> Optional[dict]:
    if rle is None:
        return None
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.decode() if isinstance(counts, bytes) else counts}


def _frame_iou(a: Optional[dict], b: Optional[dict]) -> float:
    if a is None or b is None:
        return 0.0
    return float(mask_util.iou([a], [b], [0])[0][0])


def oracle_results(gt: Dict[str, Any], results: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    """The results of each row (module docstring), keyed by row name."""
    sizes = {v["id"]: (v["height"], v["width"]) for v in gt["videos"]}
    objects: Dict[int, List[Tuple[dict, List[Optional[dict]]]]] = {}

    def rles(entry: Dict[str, Any]) -> List[Optional[dict]]:  # GT or result: polygons / RLE / null per frame
        return [to_rle(x, *sizes[entry["video_id"]]) for x in entry["segmentations"]]

    for a in gt["annotations"]:
        objects.setdefault(a["video_id"], []).append((a, rles(a)))
    masks = [rles(r) for r in results]
    match: List[Tuple[float, Optional[int]]] = []  # (video IoU, object index in its video)
    for r, m in zip(results, masks):
        ious = [video_iou(m, g) for _, g in objects.get(r["video_id"], [])]
        best = max(range(len(ious)), key=ious.__getitem__) if ious else None
        match.append((ious[best], best) if ious else (0.0, None))

    def with_classes(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        rows = copy.deepcopy(rows)
        for r, (iou, obj) in zip(rows, match):
            if obj is not None and iou > CLASS_IOU:
                r["category_id"] = objects[r["video_id"]][obj][0]["category_id"]
        return rows

    linked = copy.deepcopy(results)
    for vid, objs in objects.items():
        tracks = [i for i, r in enumerate(results) if r["video_id"] == vid]
        for o, (_, g) in enumerate(objs):
            own = [i for i in tracks if match[i][1] == o]
            if not own:
                continue
            best_track = max(own, key=lambda i: match[i][0])
            frames = []
            for f, gm in enumerate(g):
                iou, m = max(((_frame_iou(masks[i][f], gm), masks[i][f]) for i in tracks), key=lambda t: t[0])
                frames.append(_json_rle(m) if iou >= MATCH_IOU else None)
            linked[best_track]["segmentations"] = frames

    fixed = copy.deepcopy(results)
    for r, m, (_, obj) in zip(fixed, masks, match):
        if obj is None:
            continue
        g = objects[r["video_id"]][obj][1]
        r["segmentations"] = [_json_rle(gm if _frame_iou(pm, gm) >= MATCH_IOU else pm) for pm, gm in zip(m, g)]
    return {
        "as is": results,
        "class": with_classes(results),
        "linking": linked,
        "masks": fixed,
        "masks + class": with_classes(fixed),
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt", required=True, help="YouTube-VIS ground-truth JSON with annotations")
    p.add_argument("results", help="results.json (YouTube-VIS results format)")
    a = p.parse_args(argv)
    with open(a.gt) as f:
        gt = json.load(f)
    with open(a.results) as f:
        results = json.load(f)
    print("| oracle | AP | AP50 | AP75 |\n|---|---:|---:|---:|")
    for name, rows in oracle_results(gt, results).items():
        m = evaluate_ytvis(gt, rows, gt_name=a.gt, results_name=f"{a.results} ({name})")
        print(f"| {name} | {100 * m['AP']:.1f} | {100 * m['AP50']:.1f} | {100 * m['AP75']:.1f} |")


if __name__ == "__main__":
    main()
