#!/usr/bin/env python
"""Where a VIS model's AP goes: detection, classification or association, read from its ``results.json``.

    python -m experiments.track_diagnostics --gt GT.json RESULTS.json [RESULTS2.json ...]

For every annotated object (a ground-truth track) and every results file, one table row of:

- ``found``: the share of GT objects with a predicted track of video IoU >= 0.5 (any class), and ``+class`` the
  share where such a track also has the right class — the ceiling of AP50 set by detection + association vs
  by classification;
- ``ids/obj``: distinct track ids covering the object (the per-frame best track with mask IoU >= 0.5, frames
  where the object is annotated), and ``switches``: changes of that id between consecutive covered frames
  (fragmentation / identity switches: the association's errors);
- ``covered``: the share of annotated object-frames some track covers with mask IoU >= 0.5 (detection and
  segmentation, whatever the identities);
- ``tracks``, ``false``: predicted tracks, and those of video IoU < 0.5 with every GT object (with their mean
  score), which outrank true tracks in AP;
- ``purity``: over the found objects, the share of their best track's frames (frames where it has a mask) in
  which it covers that object (mask IoU >= 0.5): below 100 % the track also holds other objects or background,
  i.e. wrong links (costly at the high video-IoU thresholds of AP75);
- ``true score``: the median score of the best right-class track of each found object, and ``false above``:
  the false tracks scoring above it (the ranking errors that cost AP once objects are found).

Two results files of the same detections (e.g. a model and its ``INFERENCE.BASELINE iou``) then differ only in
the association columns.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Dict, List, Sequence

import numpy as np
import pycocotools.mask as mask_util

from projects.evaluation.ytvis_eval import video_iou
from projects.evaluation.ytvis_format import load_ground_truth, load_results

IOU = 0.5


def _frame_ious(preds: Sequence[Dict], gt: Dict) -> np.ndarray:
    """(T, P) mask IoU of the GT object with every predicted track of its video, per frame (0 where absent)."""
    length = len(gt["segmentations"])
    out = np.zeros((length, len(preds)))
    for t, g in enumerate(gt["segmentations"]):
        if g is None:
            continue
        for p, pred in enumerate(preds):
            r = pred["segmentations"][t] if t < len(pred["segmentations"]) else None
            if r is not None:
                out[t, p] = mask_util.iou([r], [g], [0])[0, 0]
    return out


def diagnose(gt_file: str, results_file: str) -> Dict[str, float]:
    gt = load_ground_truth(gt_file)
    preds = load_results(results_file, gt)
    by_video: Dict[int, List[Dict]] = defaultdict(list)
    for p in preds:
        by_video[p["video_id"]].append(p)
    found = found_class = covered = annotated = switches = 0
    ids_per_object: List[int] = []
    matched_tracks = set()
    true_scores: List[float] = []
    purities: List[float] = []
    for g in gt.tracks:
        tracks = by_video.get(g["video_id"], [])
        vious = [video_iou(p["segmentations"], g["segmentations"]) for p in tracks]
        for i, v in enumerate(vious):
            if v >= IOU:
                matched_tracks.add(id(tracks[i]))
        found += any(v >= IOU for v in vious)
        right = [(v, p["score"]) for v, p in zip(vious, tracks) if v >= IOU and p["category_id"] == g["category_id"]]
        found_class += bool(right)
        if right:
            true_scores.append(max(right)[1])
        ious = _frame_ious(tracks, g)  # (T, 0) for a video without tracks
        present = [t for t, s in enumerate(g["segmentations"]) if s is not None]
        annotated += len(present)
        best = [int(ious[t].argmax()) if tracks and ious[t].max() >= IOU else -1 for t in present]
        covered += sum(b >= 0 for b in best)
        if vious and max(vious) >= IOU:
            k = int(np.argmax(vious))
            has_mask = [t for t, r in enumerate(tracks[k]["segmentations"]) if r is not None and t < len(ious)]
            if has_mask:
                purities.append(float(np.mean([ious[t, k] >= IOU for t in has_mask])))
        seq = [b for b in best if b >= 0]
        ids_per_object.append(len(set(seq)))
        switches += sum(a != b for a, b in zip(seq, seq[1:]))
    false = [p for p in preds if id(p) not in matched_tracks]
    n = max(len(gt.tracks), 1)
    true_median = float(np.median(true_scores)) if true_scores else 0.0
    return {
        "found": 100.0 * found / n,
        "found_class": 100.0 * found_class / n,
        "ids_per_object": float(np.mean([k for k in ids_per_object if k > 0])) if any(ids_per_object) else 0.0,
        "switches": float(switches),
        "covered": 100.0 * covered / max(annotated, 1),
        "tracks": float(len(preds)),
        "false": float(len(false)),
        "false_score": float(np.mean([p["score"] for p in false])) if false else 0.0,
        "purity": 100.0 * float(np.mean(purities)) if purities else 0.0,
        "true_score": true_median,
        "false_above": float(sum(p["score"] > true_median for p in false)),
    }


def main(argv=None) -> List[Dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gt", required=True, help="YouTube-VIS ground-truth JSON with annotations")
    p.add_argument("results", nargs="+", help="results.json files (YouTube-VIS results format)")
    a = p.parse_args(argv)
    rows = [diagnose(a.gt, r) for r in a.results]
    print(
        "| results | found % | +class % | ids/obj | switches | covered % | tracks | false (mean score) "
        "| purity % | true score | false above |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in zip(a.results, rows):
        print(
            f"| {name} | {r['found']:.1f} | {r['found_class']:.1f} | {r['ids_per_object']:.2f} | "
            f"{r['switches']:.0f} | {r['covered']:.1f} | {r['tracks']:.0f} | {r['false']:.0f} "
            f"({r['false_score']:.2f}) | {r['purity']:.1f} | {r['true_score']:.3f} | {r['false_above']:.0f} |"
        )
    return rows


if __name__ == "__main__":
    main()
