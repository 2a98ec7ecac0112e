"""Video train/test data loaders and dataset-level checks (class count, dataset lists).

Training mixes video datasets and image datasets (:mod:`projects.data.image_sources`, as single frames or
pseudo-videos) in ``DATASETS.TRAIN``; ``DATASETS.TRAIN_WEIGHTS`` sets the share of samples drawn from each.

Unusable training data is reported before any model runs, naming the file: a video dataset without one
annotated object, or whose image root holds none of its videos (:func:`check_training_videos`). If every
training sample is still skipped at run time (all frames of the wrong size, no instance ever visible), the
loader stops with :class:`NoUsableSampleError` and the last problem, instead of detectron2's ``random.sample``
error.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any, Dict, List, Sequence, Tuple

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.data.common import DatasetFromList, MapDataset
from detectron2.data.samplers import RepeatFactorTrainingSampler

from .errors import DatasetFormatError
from .image_sources import is_video_dataset, load_category_map, load_image_source, target_classes
from .pseudo_video_mapper import MixedSourceMapper, PseudoVideoMapper
from .splits import configure_splits, is_split, write_split_ground_truth
from .video_mapper import VideoDatasetMapper, VideoTestDatasetMapper

logger = logging.getLogger(__name__)

__all__ = [
    "get_video_dataset_dicts",
    "get_train_sources",
    "source_repeat_factors",
    "build_video_train_loader",
    "build_video_test_loader",
    "resolve_num_classes",
    "check_training_videos",
    "missing_frames",
    "NoUsableSampleError",
]


def get_video_dataset_dicts(names: Sequence[str], require_annotations: bool = False) -> List[Dict[str, Any]]:
    """Concatenate registered video datasets; all must share one category list."""
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ValueError("no dataset given (DATASETS.TRAIN / DATASETS.TEST is empty)")
    images = [n for n in names if not is_video_dataset(n)]
    if images:
        raise ValueError(
            f"{images} are image datasets: they can be training sources (DATASETS.TRAIN, with a category map) "
            "but not video datasets to test on"
        )
    classes = [MetadataCatalog.get(n).get("thing_classes") for n in names]
    if any(c != classes[0] for c in classes):
        raise ValueError(f"datasets {list(names)} have different categories and cannot be mixed")
    dicts = [DatasetCatalog.get(n) for n in names]
    for name, d in zip(names, dicts):
        if not d:
            raise ValueError(f"dataset '{name}' is empty")
        if require_annotations and "annotations" not in d[0]:
            raise ValueError(f"dataset '{name}' has no annotations (a valid/test split?): it cannot be trained on")
        if require_annotations:
            check_training_videos(name, d)
    videos = list(itertools.chain.from_iterable(dicts))
    logger.info(f"Loaded {len(videos)} videos ({sum(v['length'] for v in videos)} frames) from {list(names)}")
    return videos


def _dataset_file(name: str, key: str = "json_file") -> str:
    """The dataset's JSON file (``key="image_root"``: its image folder), for error messages; a local split
    names its source's."""
    meta = MetadataCatalog.get(name)
    value = meta.get(key, None)
    if value is None and meta.get("split_of", None):
        value = MetadataCatalog.get(meta.split_of).get(key, None)
    return str(value) if value else f"dataset '{name}'"


def check_training_videos(name: str, videos: List[Dict[str, Any]]) -> None:
    """Raise :class:`DatasetFormatError` when no training sample can come from the video dataset ``name``: no
    video has an annotated (non-crowd) object, or the first frame of no video exists (a mistyped image root).
    Some videos without their first frame: one warning (their samples are skipped, ``INPUT.ON_BAD_FRAME``)."""
    if not any(not a.get("iscrowd", 0) for v in videos for frame in v["annotations"] for a in frame):
        raise DatasetFormatError(
            _dataset_file(name),
            f"dataset '{name}' has no annotated object ('annotations' is empty or all crowd): nothing to train on",
        )
    missing = [v["file_names"][0] for v in videos if not os.path.isfile(v["file_names"][0])]
    if len(missing) == len(videos):
        raise DatasetFormatError(
            _dataset_file(name, "image_root"),
            f"image root of dataset '{name}' holds none of its {len(videos)} videos (e.g. {missing[0]} does not "
            "exist): check IMAGE_ROOT in --dataset NAME=JSON:IMAGE_ROOT",
        )
    if missing:
        logger.warning(
            f"dataset '{name}': the first frame of {len(missing)} of {len(videos)} videos does not exist (e.g. "
            f"{missing[0]}); samples reading a missing frame are skipped (INPUT.ON_BAD_FRAME)"
        )


def missing_frames(videos: List[Dict[str, Any]]) -> List[str]:
    """The frame files of ``videos`` that do not exist (a stat per frame)."""
    return [f for v in videos for f in v["file_names"] if not os.path.isfile(f)]


class NoUsableSampleError(ValueError):
    """Every training sample was skipped (bad frames, nothing visible): there is nothing to train on."""


class _TrainSamples(MapDataset):
    """detectron2's MapDataset (a sample the mapper returns ``None`` for is replaced by another one), but when
    every sample has failed it raises :class:`NoUsableSampleError` with the mapper's last problem instead of
    ``ValueError: Sample larger than population``."""

    def __new__(cls, dataset, map_func, names: Sequence[str] = ()):
        return super().__new__(cls, dataset, map_func)

    def __init__(self, dataset, map_func, names: Sequence[str] = ()):
        super().__init__(dataset, map_func)
        self._names = list(names)

    def __getitem__(self, idx):
        try:
            return super().__getitem__(idx)
        except ValueError:
            if self._fallback_candidates:
                raise
        problem = getattr(self._map_func, "last_problem", None) or "unknown"  # the wrapper forwards attributes
        raise NoUsableSampleError(
            f"no usable training sample in DATASETS.TRAIN {tuple(self._names)}: all {len(self)} were skipped "
            f"(last problem: {problem})"
        )


def _identity(x):
    return x


def get_train_sources(cfg) -> List[Tuple[str, List[Dict[str, Any]]]]:
    """``[(name, records)]`` for every ``DATASETS.TRAIN`` entry: video dicts, or image records re-labelled to
    the video classes (the first video dataset of TRAIN, else of TEST) by ``DATASETS.CATEGORY_MAP``."""
    names = list(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError("no dataset given (DATASETS.TRAIN is empty)")
    classes, reference = target_classes(names, cfg.DATASETS.TEST)
    videos = [n for n in names if is_video_dataset(n)]
    if cfg.DATASETS.CATEGORY_MAP and not is_video_dataset(reference):
        raise ValueError(
            "DATASETS.CATEGORY_MAP maps to the classes of a video dataset, but DATASETS.TRAIN and DATASETS.TEST "
            "name none; add the video dataset to DATASETS.TEST"
        )
    category_map = load_category_map(cfg.DATASETS.CATEGORY_MAP, classes) if cfg.DATASETS.CATEGORY_MAP else None
    if category_map is not None and len(videos) == len(names):
        logger.warning("DATASETS.CATEGORY_MAP is set but DATASETS.TRAIN has no image dataset: the map is unused")
    mismatched = [n for n in videos if list(MetadataCatalog.get(n).thing_classes) != classes]
    if mismatched:
        raise ValueError(f"video datasets {mismatched} have other categories than '{reference}' and cannot be mixed")
    return [
        (
            n,
            get_video_dataset_dicts([n], True)
            if n in videos
            else load_image_source(n, classes, category_map, reference),
        )
        for n in names
    ]


def source_repeat_factors(sizes: Sequence[int], weights: Sequence[float]) -> torch.Tensor:
    """Per-sample repeat factors under which source ``d`` gives ``weights[d] / sum(weights)`` of the samples.

    Sample ``i`` of source ``d`` gets ``r = w_d / sum(w) * N / N_d`` (``N`` = all samples, so an epoch keeps its
    length); detectron2's :class:`RepeatFactorTrainingSampler` repeats it ``floor(r)`` times plus once with
    probability ``r - floor(r)`` per epoch, so the expected share of source ``d`` is exactly its weight.
    """
    if len(weights) != len(sizes):
        raise ValueError(f"DATASETS.TRAIN_WEIGHTS has {len(weights)} entries for {len(sizes)} DATASETS.TRAIN datasets")
    if any(w <= 0 for w in weights):
        raise ValueError(
            f"DATASETS.TRAIN_WEIGHTS must be > 0 (remove a dataset instead of weighting it 0), got {weights}"
        )
    total, norm = sum(sizes), float(sum(weights))
    return torch.cat([torch.full((n,), w / norm * total / n, dtype=torch.float64) for n, w in zip(sizes, weights)])


def build_video_train_loader(cfg, mapper=None):
    """detectron2's train loader (sampler, aspect-ratio grouping, workers) over the mixed training sources.

    Video dicts go to :class:`VideoDatasetMapper`, image records to :class:`PseudoVideoMapper` (a custom
    ``mapper`` receives both kinds). With ``DATASETS.TRAIN_WEIGHTS`` the sampler is a
    :class:`RepeatFactorTrainingSampler` with :func:`source_repeat_factors`.
    """
    configure_splits(cfg)
    sources = get_train_sources(cfg)
    dataset = list(itertools.chain.from_iterable(records for _, records in sources))
    sampler = None
    if cfg.DATASETS.TRAIN_WEIGHTS:
        if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
            raise ValueError(
                "DATASETS.TRAIN_WEIGHTS needs DATALOADER.SAMPLER_TRAIN TrainingSampler, "
                f"got {cfg.DATALOADER.SAMPLER_TRAIN}"
            )
        factors = source_repeat_factors([len(r) for _, r in sources], list(cfg.DATASETS.TRAIN_WEIGHTS))
        sampler = RepeatFactorTrainingSampler(factors)
        logger.info(
            "Training sources (samples, weight): "
            + ", ".join(f"{n} ({len(r)}, {w})" for (n, r), w in zip(sources, cfg.DATASETS.TRAIN_WEIGHTS))
        )
    if mapper is None:
        video_mapper = VideoDatasetMapper(cfg, True)
        mapper = video_mapper
        if any(not is_video_dataset(n) for n, _ in sources):
            mapper = MixedSourceMapper(video_mapper, PseudoVideoMapper(cfg, True))
    samples = _TrainSamples(DatasetFromList(dataset, copy=False), mapper, [n for n, _ in sources])
    return build_detection_train_loader(cfg, mapper=_identity, dataset=samples, sampler=sampler)


def build_video_test_loader(cfg, dataset_name: str, mapper=None):
    """One video per batch; frames are read lazily while the model runs.

    A local split (``*_holdout`` / ``*_train_sub``) also gets its ground-truth JSON in ``OUTPUT_DIR/splits``
    for the evaluator.
    """
    configure_splits(cfg)
    dataset = get_video_dataset_dicts([dataset_name])
    if is_split(dataset_name):
        write_split_ground_truth(dataset_name, dataset)
    return build_detection_test_loader(
        dataset=dataset, mapper=mapper or VideoTestDatasetMapper(cfg), num_workers=cfg.DATALOADER.NUM_WORKERS
    )


def resolve_num_classes(cfg) -> int:
    """Set ``cfg.MODEL.NUM_CLASSES`` from the first training dataset (-1) or check that it matches.

    The config must not be frozen. Raises ``ValueError`` naming both numbers on a mismatch.
    """
    if not list(cfg.DATASETS.TRAIN) and not list(cfg.DATASETS.TEST):
        raise ValueError("cannot infer MODEL.NUM_CLASSES: DATASETS.TRAIN and DATASETS.TEST are both empty")
    classes, reference = target_classes(cfg.DATASETS.TRAIN, cfg.DATASETS.TEST)
    return set_num_classes(cfg, len(classes), f"dataset '{reference}' has {len(classes)} categories")


def set_num_classes(cfg, num: int, source: str) -> int:
    """``MODEL.NUM_CLASSES`` -1 becomes ``num``; any other value must equal it (``source`` says where ``num``
    comes from, for the error: "dataset 'x' has 5 categories")."""
    if cfg.MODEL.NUM_CLASSES == -1:
        cfg.MODEL.NUM_CLASSES = num
    elif cfg.MODEL.NUM_CLASSES != num:
        raise ValueError(
            f"MODEL.NUM_CLASSES is {cfg.MODEL.NUM_CLASSES} but {source}; set MODEL.NUM_CLASSES -1 to follow it"
        )
    return num
