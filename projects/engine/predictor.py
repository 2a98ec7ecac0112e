"""VideoPredictor: run a trained online VIS model (VisSTG or RGNN-VIS) on raw BGR frames (``demo/demo.py``'s
engine, as detectron2's ``DefaultPredictor`` is its demo's).

Two ways to use it, sharing one code path (so they give identical tracks):

    predictor = VideoPredictor(cfg)
    for result in predictor.stream(frames):        # per-frame results as soon as each frame is done
        result.instances.track_ids, .pred_classes, .scores, .pred_masks
    video = predictor(frames)                       # whole video -> video-level tracks (YouTube-VIS style)

Streaming holds only the model's online state (tracks, memory), so memory stays flat on endless inputs.

The class names come with the model (``projects.data.model_metadata``: stored in the checkpoint and in
``model_metadata.json`` beside it at training time), else from a registered dataset; ``MODEL.NUM_CLASSES`` -1
follows them, so a training ``OUTPUT_DIR/config.yaml`` or a generic config both work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.data.catalog import Metadata
from detectron2.modeling import build_model
from detectron2.structures import Instances

from ..data.model_metadata import resolve_inference_metadata
from ..data.video_mapper import build_video_augmentation
from ..modeling import VideoTrackAccumulator, finish_tracks, iterate_online
from .checkpoint import load_weights  # the strict loader shared with train_net.py --eval-only

__all__ = ["VideoPredictor", "FrameResult"]


@dataclass
class FrameResult:
    """Per-frame output: ``instances`` (on CPU, original frame size) with track_ids/pred_classes/scores/pred_masks."""

    frame_idx: int
    instances: Instances


class VideoPredictor:
    """Build the model of ``cfg``, load ``cfg.MODEL.WEIGHTS`` and run it online over frames (BGR uint8 arrays).

    ``dataset``: a registered dataset whose class names to use instead of those stored with the weights.
    ``metadata`` (``class_names`` dict of :mod:`projects.data.model_metadata`) skips the look-up entirely.
    """

    def __init__(self, cfg, dataset: Optional[str] = None, metadata: Optional[Dict[str, Any]] = None):
        self.cfg = cfg.clone()
        self.cfg.defrost()
        if metadata is None:
            metadata = resolve_inference_metadata(self.cfg, dataset)
        elif self.cfg.MODEL.NUM_CLASSES == -1:
            self.cfg.MODEL.NUM_CLASSES = len(metadata["thing_classes"])
        self.cfg.freeze()
        self.class_names = metadata
        cfg = self.cfg
        self.model = build_model(self.cfg).eval()
        for attr in ("init_video_state", "step"):
            if not hasattr(self.model, attr):
                raise TypeError(f"{cfg.MODEL.META_ARCHITECTURE} is not an online video model (no {attr}())")
        load_weights(self.model, cfg.MODEL.WEIGHTS)
        self.augmentations = T.AugmentationList(build_video_augmentation(cfg, is_train=False))
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("BGR", "RGB"):
            raise ValueError(f"VideoPredictor supports INPUT.FORMAT BGR or RGB, got {self.input_format}")
        self.metadata = Metadata(
            name=metadata.get("dataset", "model"), **{k: v for k, v in metadata.items() if k.startswith("thing_")}
        )
        self.max_tracks = cfg.TEST.VIDEO.MAX_TRACKS

    def _preprocess(self, frame_bgr: np.ndarray) -> torch.Tensor:
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) BGR frame, got shape {frame_bgr.shape}")
        image = frame_bgr[:, :, ::-1] if self.input_format == "RGB" else frame_bgr
        aug_input = T.AugInput(np.ascontiguousarray(image))
        self.augmentations(aug_input)
        return torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))

    def _frames(self, frames: Iterable[np.ndarray], size: List[int]) -> Iterator[torch.Tensor]:
        for frame in frames:
            if not size:
                size.extend(frame.shape[:2])
            elif list(frame.shape[:2]) != size:
                raise ValueError(f"all frames of a video must have one size: {size} then {list(frame.shape[:2])}")
            yield self._preprocess(frame)

    def stream(self, frames: Iterable[np.ndarray], state: Any = None) -> Iterator[FrameResult]:
        """Yield a :class:`FrameResult` per frame as soon as it is processed."""
        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            return
        h, w = first.shape[:2]

        def chained():
            yield first
            yield from frames

        for t, instances in iterate_online(self.model, self._frames(chained(), []), h, w, state):
            yield FrameResult(t, instances.to("cpu"))

    def __call__(self, frames: List[np.ndarray]) -> Dict[str, Any]:
        """Whole video -> ``{"height", "width", "length", "tracks": [{score, category_id, segmentations}],
        "tracks_over_max_tracks"}``: the ``TEST.VIDEO.MAX_TRACKS`` best tracks and how many the cap dropped."""
        if len(frames) == 0:
            raise ValueError("the video has no frames")
        state = self.model.init_video_state()
        acc = VideoTrackAccumulator(len(frames))
        for result in self.stream(frames, state):
            acc.add_frame(result.frame_idx, result.instances)
        h, w = frames[0].shape[:2]
        return {
            "height": h,
            "width": w,
            "length": len(frames),
            "tracks": finish_tracks(self.model, state, acc, self.max_tracks),
            "tracks_over_max_tracks": acc.over_max_tracks,  # what TEST.VIDEO.MAX_TRACKS dropped
        }
