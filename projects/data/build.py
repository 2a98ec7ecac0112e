"""Video train/test data loaders and dataset-level checks (class count, dataset lists)."""
from __future__ import annotations

import itertools
import logging
from typing import Any, Dict, List, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader, build_detection_train_loader

from .video_mapper import VideoDatasetMapper, VideoTestDatasetMapper

logger = logging.getLogger(__name__)

__all__ = ["get_video_dataset_dicts", "build_video_train_loader", "build_video_test_loader", "resolve_num_classes"]


def get_video_dataset_dicts(names: Sequence[str], require_annotations: bool = False) -> List[Dict[str, Any]]:
    """Concatenate registered video datasets; all must share one category list."""
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ValueError("no dataset given (DATASETS.TRAIN / DATASETS.TEST is empty)")
    classes = [MetadataCatalog.get(n).get("thing_classes") for n in names]
    if any(c != classes[0] for c in classes):
        raise ValueError(f"datasets {list(names)} have different categories and cannot be mixed")
    dicts = [DatasetCatalog.get(n) for n in names]
    for name, d in zip(names, dicts):
        if not d:
            raise ValueError(f"dataset '{name}' is empty")
        if require_annotations and "annotations" not in d[0]:
            raise ValueError(f"dataset '{name}' has no annotations (a valid/test split?): it cannot be trained on")
    videos = list(itertools.chain.from_iterable(dicts))
    logger.info(f"Loaded {len(videos)} videos ({sum(v['length'] for v in videos)} frames) from {list(names)}")
    return videos


def build_video_train_loader(cfg, mapper=None):
    """detectron2's train loader (sampler, aspect-ratio grouping, workers) over per-video dicts."""
    dataset = get_video_dataset_dicts(cfg.DATASETS.TRAIN, require_annotations=True)
    return build_detection_train_loader(cfg, mapper=mapper or VideoDatasetMapper(cfg, True), dataset=dataset)


def build_video_test_loader(cfg, dataset_name: str, mapper=None):
    """One video per batch; frames are read lazily while the model runs."""
    dataset = get_video_dataset_dicts([dataset_name])
    return build_detection_test_loader(
        dataset=dataset, mapper=mapper or VideoTestDatasetMapper(cfg), num_workers=cfg.DATALOADER.NUM_WORKERS
    )


def resolve_num_classes(cfg) -> int:
    """Set ``cfg.MODEL.NUM_CLASSES`` from the first training dataset (-1) or check that it matches.

    The config must not be frozen. Raises ``ValueError`` naming both numbers on a mismatch.
    """
    names = list(cfg.DATASETS.TRAIN) or list(cfg.DATASETS.TEST)
    if not names:
        raise ValueError("cannot infer MODEL.NUM_CLASSES: DATASETS.TRAIN and DATASETS.TEST are both empty")
    num = len(MetadataCatalog.get(names[0]).thing_classes)
    if cfg.MODEL.NUM_CLASSES == -1:
        cfg.MODEL.NUM_CLASSES = num
    elif cfg.MODEL.NUM_CLASSES != num:
        raise ValueError(
            f"MODEL.NUM_CLASSES is {cfg.MODEL.NUM_CLASSES} but dataset '{names[0]}' has {num} categories; "
            "set MODEL.NUM_CLASSES -1 to follow the dataset"
        )
    return num
