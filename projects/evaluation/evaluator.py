"""detectron2 ``DatasetEvaluator`` for YouTube-VIS style datasets (data flow: docs/architecture.md).

Collects the video-level tracks of the models (docs/interfaces.md), gathers them on the main process, writes
``results.json`` and ``results.zip`` (``results.json`` at the zip root, as the CodaLab server wants) and, when
the dataset's JSON has annotations, reports the official YouTube-VIS metrics in percent (also written to
``metrics.json`` next to the results, for scripts that collect many evaluations; strict JSON, ``null`` where a
metric is undefined while the returned dict has NaN like detectron2's COCOEvaluator). A video output's optional
``"diagnostics"`` (counts from the model's ``video_diagnostics`` and what ``TEST.VIDEO.MAX_TRACKS`` dropped,
``projects.modeling.online``) is logged per video (its non-zero counts, when there are any) and summed over the
videos into ``metrics.json`` under ``"diagnostics"``.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import os
import warnings
import zipfile
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from ..engine.atomic_io import atomic_write
from ..engine.metrics_file import dumps_strict
from .ytvis_eval import evaluate_ytvis
from .ytvis_format import YTVISInputWarning

__all__ = ["YTVISEvaluator", "to_result_rle"]

REPORTED = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10")


def to_result_rle(segm: Any) -> Optional[Dict[str, Any]]:
    """A frame's prediction -> compressed RLE with ``counts`` as str, or ``None`` for no/empty mask.

    Accepts ``None``, a compressed RLE (``counts`` str or bytes) or a binary (H, W) array/tensor.
    """
    if segm is None:
        return None
    if isinstance(segm, (np.ndarray, torch.Tensor)):
        mask = segm.detach().cpu().numpy() if isinstance(segm, torch.Tensor) else segm
        segm = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    if int(mask_util.area(segm)) == 0:
        return None
    counts = segm["counts"]
    return {
        "size": [int(s) for s in segm["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


class YTVISEvaluator(DatasetEvaluator):
    """Writes YouTube-VIS results and evaluates them with :func:`evaluate_ytvis` when GT is available."""

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None, distributed: bool = True):
        self._logger = logging.getLogger(__name__)
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        meta = MetadataCatalog.get(dataset_name)
        self._json_file: str = meta.json_file
        self._class_names: Optional[List[str]] = meta.get("thing_classes")
        id_map = meta.get("thing_dataset_id_to_contiguous_id")
        self._contiguous_to_dataset_id = {c: d for d, c in id_map.items()} if id_map else None
        self._gt: Optional[dict] = None
        self._predictions: List[Dict[str, Any]] = []
        self._diagnostics: List[Dict[str, Any]] = []

    def reset(self) -> None:
        self._predictions = []
        self._diagnostics = []

    def _ground_truth(self) -> dict:
        if self._gt is None:
            with PathManager.open(self._json_file, "r") as f:
                self._gt = json.load(f)
        return self._gt

    def _dataset_category_id(self, contiguous_id: int) -> int:
        if self._contiguous_to_dataset_id is None:  # no mapping registered: GT category ids sorted
            cats = sorted(c["id"] for c in self._ground_truth()["categories"])
            self._contiguous_to_dataset_id = dict(enumerate(cats))
        mapping = self._contiguous_to_dataset_id
        if int(contiguous_id) not in mapping:
            raise ValueError(
                f"{self._dataset_name}: the model predicted class index {int(contiguous_id)} but the dataset has "
                f"{len(mapping)} categories: the model was built for another class list (MODEL.NUM_CLASSES)"
            )
        return mapping[int(contiguous_id)]

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Convert each video's tracks (contiguous classes) to results entries (dataset category ids)."""
        for video_input, output in zip(inputs, outputs):
            video_id = int(output.get("video_id", video_input.get("video_id")))
            if output.get("diagnostics"):
                self._diagnostics.append(output["diagnostics"])
                counts = [f"{k} {v}" for k, v in output["diagnostics"].items() if v]
                if counts:  # e.g. "video 3: frames 36, frames_over_max_detections 2, ..."; zeros left out
                    self._logger.info(f"video {video_id}: " + ", ".join(counts))
            for track in output["tracks"]:
                self._predictions.append(
                    {
                        "video_id": video_id,
                        "category_id": self._dataset_category_id(track["category_id"]),
                        "score": float(track["score"]),
                        "segmentations": [to_result_rle(s) for s in track["segmentations"]],
                    }
                )

    def _write_results(self, predictions: List[Dict[str, Any]]) -> None:
        if not self._output_dir:
            self._logger.warning("YTVISEvaluator: no output_dir, results.json / results.zip not written")
            return
        PathManager.mkdirs(self._output_dir)
        payload = json.dumps(predictions).encode("utf-8")
        json_path = os.path.join(self._output_dir, "results.json")
        zip_path = os.path.join(self._output_dir, "results.zip")
        atomic_write(json_path, payload)  # a kill mid-write never leaves a truncated results file
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("results.json", payload)
        atomic_write(zip_path, buffer.getvalue())
        self._logger.info(
            f"Wrote {len(predictions)} predicted tracks to {json_path} and {zip_path} "
            "(upload the zip to the evaluation server for splits without annotations)"
        )

    def evaluate(self) -> OrderedDict[str, Dict[str, float]]:
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather((self._predictions, self._diagnostics), dst=0)
            if not comm.is_main_process():
                return OrderedDict()
            predictions = list(itertools.chain(*(p for p, _ in gathered)))
            diagnostics = list(itertools.chain(*(d for _, d in gathered)))
        else:
            predictions, diagnostics = self._predictions, self._diagnostics
        self._write_results(predictions)
        totals = {}
        if diagnostics:  # summed over the videos that report them
            totals = {k: sum(d.get(k, 0) for d in diagnostics) for k in dict.fromkeys(itertools.chain(*diagnostics))}
            totals = {"videos": len(diagnostics), **totals}
            self._logger.info(f"Diagnostics summed over the videos: {totals}")
        results_name = (
            os.path.join(self._output_dir, "results.json")
            if self._output_dir
            else f"<predictions on {self._dataset_name}>"
        )
        gt = self._ground_truth()
        if "annotations" not in gt:
            self._logger.info(f"{self._dataset_name} has no annotations: skipping evaluation")
            return OrderedDict()
        log = io.StringIO()
        with warnings.catch_warnings(record=True) as caught:  # input findings (e.g. a GT id 0) go to the log
            warnings.simplefilter("always", YTVISInputWarning)
            metrics = evaluate_ytvis(gt, predictions, log=log, gt_name=self._json_file, results_name=results_name)
        for w in caught:
            if issubclass(w.category, YTVISInputWarning):
                self._logger.warning(str(w.message))
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        self._logger.info(f"Evaluation results for {self._dataset_name}:\n{log.getvalue()}")
        results = self._to_percent(metrics)
        record = {"dataset": self._dataset_name, "segm": results}
        if totals:
            record["diagnostics"] = totals
        if self._output_dir:
            payload = dumps_strict(record, indent=1)  # null where a metric is undefined
            atomic_write(os.path.join(self._output_dir, "metrics.json"), payload.encode("utf-8"))
        return OrderedDict(segm=results)

    def _to_percent(self, metrics: Dict[str, Any]) -> Dict[str, float]:
        """Fractions -> percentages as detectron2's COCOEvaluator (NaN when undefined)."""

        def pct(x: float) -> float:
            return x * 100 if x >= 0 else math.nan

        results = {k: pct(metrics[k]) for k in REPORTED}
        names = {}
        if self._class_names and self._contiguous_to_dataset_id:
            names = {
                d: self._class_names[c] for c, d in self._contiguous_to_dataset_id.items() if c < len(self._class_names)
            }
        gt_names = {c["id"]: c["name"] for c in self._ground_truth()["categories"]}
        for cat_id, ap in metrics["per_category"].items():
            results[f"AP-{names.get(cat_id, gt_names[cat_id])}"] = pct(ap)
        return results
