"""A ground-truth oracle "model": returns the GT tracks of a video, optionally perturbed.

Used to check the data → model → evaluator → results pipeline end to end (tests, ``train_net.py`` smoke runs)
and as an upper bound. It reads the GT of ``MODEL.ORACLE.DATASET`` from the DatasetCatalog by ``video_id``;
perturbations: drop each GT frame mask with probability ``DROP_FRAME_PROB``, dilate/erode masks by
``MASK_JITTER`` pixels, randomise the score. Its only parameter is a score logit, trained towards "the
oracle is right" so that the training loop has something to optimise.
"""

from __future__ import annotations

from typing import Any, Dict, List

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import CfgNode as CN
from detectron2.data import DatasetCatalog
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn

from ..utils.masks import decode_mask, encode_mask


def add_oracle_config(cfg: CN) -> None:
    cfg.MODEL.ORACLE = CN()
    cfg.MODEL.ORACLE.DATASET = ""  # empty: the first of DATASETS.TEST
    cfg.MODEL.ORACLE.DROP_FRAME_PROB = 0.0
    cfg.MODEL.ORACLE.MASK_JITTER = 0
    cfg.MODEL.ORACLE.SEED = 0


@META_ARCH_REGISTRY.register()
class VideoGTOracle(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        if not (cfg.MODEL.ORACLE.DATASET or cfg.DATASETS.TEST):
            raise ValueError("the GT oracle needs a dataset: set MODEL.ORACLE.DATASET or DATASETS.TEST")
        self.dataset = cfg.MODEL.ORACLE.DATASET or cfg.DATASETS.TEST[0]
        self.drop_prob = cfg.MODEL.ORACLE.DROP_FRAME_PROB
        self.jitter = cfg.MODEL.ORACLE.MASK_JITTER
        self.seed = cfg.MODEL.ORACLE.SEED
        self.score_logit = nn.Parameter(torch.zeros(()))
        self.register_buffer("_device_probe", torch.zeros(0), persistent=False)
        self._gt: Dict[int, Dict[str, Any]] = {}

    def _video_gt(self, video_id: int) -> Dict[str, Any]:
        if not self._gt:
            self._gt = {v["video_id"]: v for v in DatasetCatalog.get(self.dataset)}
        if video_id not in self._gt:
            raise KeyError(f"video {video_id} is not in the oracle's dataset '{self.dataset}'")
        return self._gt[video_id]

    def forward(self, batched_inputs: List[Dict[str, Any]]):
        if self.training:
            target = torch.ones((), device=self.score_logit.device)
            return {"loss_oracle_score": F.binary_cross_entropy_with_logits(self.score_logit, target)}
        return [self._predict(v) for v in batched_inputs]

    def _predict(self, video: Dict[str, Any]) -> Dict[str, Any]:
        gt = self._video_gt(video["video_id"])
        rng = np.random.default_rng(self.seed + int(video["video_id"]))
        h, w, length = gt["height"], gt["width"], gt["length"]
        tracks: Dict[int, Dict[str, Any]] = {}
        kernel = np.ones((2 * abs(self.jitter) + 1,) * 2, np.uint8)
        for t, annos in enumerate(gt.get("annotations", [[]] * length)):
            for a in annos:
                track = tracks.setdefault(a["id"], {"category_id": a["category_id"], "segmentations": [None] * length})
                if rng.random() < self.drop_prob:
                    continue
                mask = decode_mask(a["segmentation"], h, w)
                if self.jitter:
                    op = cv2.dilate if self.jitter > 0 else cv2.erode
                    mask = op(mask.astype(np.uint8), kernel).astype(bool)
                track["segmentations"][t] = encode_mask(mask)
        score = float(torch.sigmoid(self.score_logit))
        results = [
            {"score": score * float(rng.uniform(0.5, 1.0)), **tr}
            for tr in tracks.values()
            if any(s is not None for s in tr["segmentations"])
        ]
        return {"video_id": video["video_id"], "height": h, "width": w, "length": length, "tracks": results}
