"""Video data layer: YouTube-VIS-format datasets, synthetic VIS data, mappers and loaders."""
from . import builtin  # noqa: F401  (registers the builtin datasets)
from .build import build_video_test_loader, build_video_train_loader, get_video_dataset_dicts, resolve_num_classes
from .errors import DatasetFormatError
from .video_mapper import VideoDatasetMapper, VideoTestDatasetMapper
from .ytvis import load_ytvis_json, register_ytvis_instances

__all__ = [
    "DatasetFormatError",
    "VideoDatasetMapper",
    "VideoTestDatasetMapper",
    "build_video_test_loader",
    "build_video_train_loader",
    "get_video_dataset_dicts",
    "load_ytvis_json",
    "register_ytvis_instances",
    "resolve_num_classes",
]
