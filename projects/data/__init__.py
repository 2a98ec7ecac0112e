"""Video data layer: YouTube-VIS-format datasets, local splits, image sources, synthetic VIS data, mappers, loaders."""

from . import builtin  # noqa: F401  (registers the builtin datasets)
from .build import (
    build_video_test_loader,
    build_video_train_loader,
    get_train_sources,
    get_video_dataset_dicts,
    resolve_num_classes,
    source_repeat_factors,
)
from .errors import DatasetFormatError
from .image_sources import load_category_map, load_image_source
from .pseudo_video_mapper import MixedSourceMapper, PseudoVideoMapper, RandomZoomShiftFlip
from .register import register_json_dataset
from .splits import SPLIT_SEED, holdout_video_ids, register_holdout_splits
from .video_mapper import VideoDatasetMapper, VideoTestDatasetMapper
from .ytvis import load_ytvis_json, register_ytvis_instances

__all__ = [
    "SPLIT_SEED",
    "DatasetFormatError",
    "MixedSourceMapper",
    "PseudoVideoMapper",
    "RandomZoomShiftFlip",
    "get_train_sources",
    "holdout_video_ids",
    "load_category_map",
    "load_image_source",
    "register_holdout_splits",
    "register_json_dataset",
    "source_repeat_factors",
    "VideoDatasetMapper",
    "VideoTestDatasetMapper",
    "build_video_test_loader",
    "build_video_train_loader",
    "get_video_dataset_dicts",
    "load_ytvis_json",
    "register_ytvis_instances",
    "resolve_num_classes",
]
