"""YouTube-VIS video AP/AR, computed like the official evaluation (youtubevos/cocoapi ``ytvoseval.py``).

pycocotools' ``COCOeval`` does the matching, accumulation and summary; videos play the role of images and
tracks the role of objects. What differs from COCO, following the official code:

- IoU between a predicted and a GT track = Σ_t |P_t ∩ G_t| / Σ_t |P_t ∪ G_t|; a frame where only one side has
  a mask adds that mask's area to the union, a frame where both are null adds nothing; 0 if the union is 0.
  Crowd GT uses this same IoU (not COCO's crowd IoU); matches to crowd GT are neither TP nor FP.
- "area" of a track (for small/medium/large) = mean of its non-null, non-zero frame areas; ranges 0–128²,
  128²–256², 256²–1e5².
- maxDets 1/10/100 per video and category; predictions sorted by score (stable) and cut to 100 before IoUs.
"""

from __future__ import annotations

import io
from collections import defaultdict
from contextlib import redirect_stdout
from typing import Any, Dict, List, Optional, Sequence, TextIO

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.cocoeval import COCOeval

from .ytvis_format import RLE, JsonInput, YTVISGroundTruth, load_ground_truth, load_results

__all__ = ["YTVISeval", "evaluate_ytvis", "video_iou", "SUMMARY_KEYS", "YTVIS_AREA_RANGES"]

YTVIS_AREA_RANGES = [[0**2, 1e5**2], [0**2, 128**2], [128**2, 256**2], [256**2, 1e5**2]]
# Order of COCOeval.stats.
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _video_iou(
    pred: Sequence[Optional[RLE]], pred_areas: Sequence[int], gt: Sequence[Optional[RLE]], gt_areas: Sequence[int]
) -> float:
    inter = union = 0
    for p, p_area, g, g_area in zip(pred, pred_areas, gt, gt_areas):
        if p is not None and g is not None:
            i = int(mask_util.area(mask_util.merge([p, g], intersect=True)))
            inter += i
            union += p_area + g_area - i
        else:  # one side null adds the other side's area; both null adds nothing
            union += p_area + g_area
    return inter / union if union > 0 else 0.0


def video_iou(pred: Sequence[Optional[RLE]], gt: Sequence[Optional[RLE]]) -> float:
    """Spatio-temporal IoU of two equally long sequences of compressed RLEs (``None`` = no mask)."""
    if len(pred) != len(gt):
        raise ValueError(f"sequences of different lengths: {len(pred)} vs {len(gt)}")

    def areas(seq: Sequence[Optional[RLE]]) -> List[int]:
        return [int(mask_util.area(r)) if r is not None else 0 for r in seq]

    return _video_iou(pred, areas(pred), gt, areas(gt))


class YTVISeval(COCOeval):
    """``COCOeval`` over videos: ``params.imgIds`` are video ids; ``_prepare``/``computeIoU`` use tracks."""

    def __init__(self, gt: YTVISGroundTruth, predictions: List[Dict[str, Any]]):
        super().__init__(cocoGt=None, cocoDt=None, iouType="segm")
        self.gt = gt
        self.predictions = predictions
        p = self.params
        p.imgIds = sorted(gt.videos)
        p.catIds = sorted(gt.categories)
        p.areaRng = [list(r) for r in YTVIS_AREA_RANGES]
        p.areaRngLbl = ["all", "small", "medium", "large"]
        p.maxDets = [1, 10, 100]

    def _prepare(self) -> None:
        # Records already carry ``area`` (mean non-zero area), ``iscrowd`` and ``ignore`` (= iscrowd).
        self._gts = defaultdict(list)
        self._dts = defaultdict(list)
        for g in self.gt.tracks:
            self._gts[g["video_id"], g["category_id"]].append(g)
        for d in self.predictions:  # file order within a (video, category): ties keep it (stable sort)
            self._dts[d["video_id"], d["category_id"]].append(d)
        self.evalImgs = defaultdict(list)
        self.eval = {}

    def computeIoU(self, imgId: int, catId: int):  # noqa: N802,N803 (COCOeval's names)
        gt = self._gts[imgId, catId]
        dt = self._dts[imgId, catId]
        if not gt and not dt:
            return []
        order = np.argsort([-d["score"] for d in dt], kind="mergesort")[: self.params.maxDets[-1]]
        dt = [dt[i] for i in order]
        ious = np.zeros((len(dt), len(gt)))
        for i, j in np.ndindex(ious.shape):
            ious[i, j] = _video_iou(
                dt[i]["segmentations"], dt[i]["frame_areas"], gt[j]["segmentations"], gt[j]["frame_areas"]
            )
        return ious

    def per_category_ap(self) -> Dict[int, float]:
        """AP per category id (area all, maxDets 100), -1 where the category has no GT. Needs ``accumulate``."""
        precision = self.eval["precision"]  # (T, R, K, A, M)
        out = {}
        for k, cat_id in enumerate(self.params.catIds):
            p = precision[:, :, k, 0, -1]
            p = p[p > -1]
            out[int(cat_id)] = float(np.mean(p)) if p.size else -1.0
        return out


def evaluate_ytvis(
    gt: JsonInput,
    results: JsonInput,
    log: Optional[TextIO] = None,
    strict: bool = False,
    gt_name: Optional[str] = None,
    results_name: Optional[str] = None,
) -> Dict[str, Any]:
    """Evaluate YouTube-VIS results against ground truth (each a JSON path or the loaded dict/list).

    Returns the ``SUMMARY_KEYS`` metrics as fractions (-1 when undefined, e.g. APl without large GT),
    ``"per_class"`` (category name -> AP) and ``"per_category"`` (category id -> AP).
    pycocotools' progress and summary table go to ``log`` (discarded by default).
    Raises ``ValueError`` on malformed input (corrupt RLEs, non-finite or non-numeric scores, non-integer video
    ids included) or a GT without ``annotations`` (a test split). Inputs the official evaluation scores but that
    look wrong (length mismatch, foreign categories, GT id 0, exact duplicates; :mod:`.ytvis_format`) are
    scored like the official code with a ``YTVISInputWarning``; ``strict=True`` raises ``ValueError`` for them
    instead. ``gt_name`` / ``results_name`` name an in-memory ``gt`` / ``results`` in messages.
    """
    gt_data = load_ground_truth(gt, strict=strict, name=gt_name)
    if not gt_data.has_annotations:
        raise ValueError(
            f"ground truth {gt_data.source} has no 'annotations' (a valid/test split without "
            "labels?): nothing to evaluate against"
        )
    evaluator = YTVISeval(gt_data, load_results(results, gt_data, strict=strict, name=results_name))
    with redirect_stdout(log if log is not None else io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    metrics: Dict[str, Any] = {k: float(v) for k, v in zip(SUMMARY_KEYS, evaluator.stats)}
    per_category = evaluator.per_category_ap()
    metrics["per_category"] = per_category
    metrics["per_class"] = {gt_data.categories[c]: ap for c, ap in per_category.items()}
    return metrics
