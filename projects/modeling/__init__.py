from . import backbone  # noqa: F401  (registers the basic ResNet backbones)
from .online import (
    OnlineVideoModel,
    VideoTrack,
    VideoTrackAccumulator,
    finish_tracks,
    iterate_online,
    run_online_inference,
)
from .oracle import VideoGTOracle, add_oracle_config

__all__ = [
    "OnlineVideoModel",
    "VideoTrack",
    "VideoTrackAccumulator",
    "run_online_inference",
    "iterate_online",
    "finish_tracks",
    "VideoGTOracle",
    "add_oracle_config",
]
