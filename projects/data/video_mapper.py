"""Dataset mappers for videos: training samples of 1 / 2 / T frames, and lazily-read test videos.

Output formats are documented in docs/interfaces.md.
"""

from __future__ import annotations

import copy
import logging
import random
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, Instances

from .errors import DatasetFormatError
from .frame_sampling import sample_frame_indices
from .frames import LazyVideoFrames, image_to_tensor, read_frame
from .scale_crop import box_centre_inside, build_scale_crop

__all__ = ["VideoDatasetMapper", "VideoTestDatasetMapper", "build_video_augmentation"]

logger = logging.getLogger(__name__)


def build_video_augmentation(cfg, is_train: bool) -> List[T.Augmentation]:
    """detectron2's ResizeShortestEdge (+ flip when training), plus the optional crop (INPUT.CROP); in training
    ``INPUT.SCALE_CROP.ENABLED`` replaces the resize with :class:`~projects.data.scale_crop.RandomScaleCrop`."""
    augs = utils.build_augmentation(cfg, is_train)
    if is_train and cfg.INPUT.SCALE_CROP.ENABLED:
        if cfg.INPUT.CROP.ENABLED:
            raise ValueError("INPUT.SCALE_CROP.ENABLED and INPUT.CROP.ENABLED are both set: enable one of them")
        augs[0] = build_scale_crop(cfg)  # in place of ResizeShortestEdge, before the flip
        return augs
    if is_train and cfg.INPUT.CROP.ENABLED:
        augs.insert(0, T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
    return augs


class VideoDatasetMapper:
    """Training mapper: sample frames, apply ONE random augmentation to all of them, build per-frame Instances.

    Each frame's ``Instances`` holds only the objects visible in that frame (after augmentation), with
    ``gt_ids`` = the track id, identical for the same object in every frame. Crowd annotations are dropped.
    Returns ``None`` (detectron2's loader then draws another video) when no sampled frame has a visible instance
    after ``max_tries`` samplings.

    A sampled frame that is missing, undecodable or of the wrong size (``INPUT.ON_BAD_FRAME``): ``"skip"``
    (default) warns (once per file and process) and returns ``None`` so that another video is drawn, and the
    number of skipped samples is added to the next returned dict as ``"skipped_samples"`` (this crosses
    DataLoader worker processes; the trainer logs the total as ``data/skipped_samples``); ``"fail"`` raises the
    :class:`DatasetFormatError` naming the file.

    ``drop_centre_outside`` (on with ``INPUT.SCALE_CROP``): an object whose box centre the augmentation moves out
    of the frame is not in that frame's ``Instances`` (the RGNN-VIS release's rule, projects/data/scale_crop.py).
    """

    ON_BAD_FRAME = ("skip", "fail")

    @configurable
    def __init__(
        self,
        *,
        augmentations: List[T.Augmentation],
        image_format: str,
        sampling_frame_num: int,
        sampling_frame_range: int,
        sampling_consecutive: bool,
        sampling_frame_shuffle: bool = False,
        min_visible_instances: int = 1,
        recompute_boxes: bool = False,
        max_tries: int = 10,
        seed: Optional[int] = None,
        on_bad_frame: str = "skip",
        drop_centre_outside: bool = False,
    ):
        if on_bad_frame not in self.ON_BAD_FRAME:
            raise ValueError(f"INPUT.ON_BAD_FRAME must be one of {self.ON_BAD_FRAME}, got {on_bad_frame!r}")
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.sampling_frame_num = sampling_frame_num
        self.sampling_frame_range = sampling_frame_range
        self.sampling_consecutive = sampling_consecutive
        self.sampling_frame_shuffle = sampling_frame_shuffle
        self.min_visible_instances = min_visible_instances
        self.recompute_boxes = recompute_boxes
        self.max_tries = max_tries
        # the module-level generator (reseeded per loader worker by detectron2) unless a seed is given: a private
        # Random would be copied unchanged into every worker, which would then all draw the same frame offsets
        self.rng = random.Random(seed) if seed is not None else random
        self.on_bad_frame = on_bad_frame
        self.drop_centre_outside = drop_centre_outside
        self._skipped = 0  # samples skipped since the last returned one (reported in it)
        self._warned_files = set()
        self.last_problem: Optional[str] = None  # why the last None was returned (for "no usable sample" errors)
        logger.info(f"[VideoDatasetMapper] augmentations: {augmentations}; frames: {sampling_frame_num}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> Dict[str, Any]:
        return {
            "augmentations": build_video_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "sampling_frame_num": cfg.INPUT.SAMPLING_FRAME_NUM,
            "sampling_frame_range": cfg.INPUT.SAMPLING_FRAME_RANGE,
            "sampling_consecutive": cfg.INPUT.SAMPLING_CONSECUTIVE,
            "sampling_frame_shuffle": cfg.INPUT.SAMPLING_FRAME_SHUFFLE,
            "min_visible_instances": cfg.INPUT.MIN_VISIBLE_INSTANCES,
            "recompute_boxes": cfg.INPUT.CROP.ENABLED,
            "on_bad_frame": cfg.INPUT.ON_BAD_FRAME,
            "drop_centre_outside": cfg.INPUT.SCALE_CROP.ENABLED,
        }

    def _choose_frames(self, video: Dict[str, Any]) -> List[int]:
        annotations = video["annotations"]
        for _ in range(self.max_tries):
            idx = sample_frame_indices(
                video["length"], self.sampling_frame_num, self.sampling_frame_range, self.sampling_consecutive, self.rng
            )
            visible = {a["id"] for t in idx for a in annotations[t] if not a.get("iscrowd", 0)}
            if len(visible) >= self.min_visible_instances:
                break
        if self.sampling_frame_shuffle:
            self.rng.shuffle(idx)
        return idx

    def __call__(self, video: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        if "annotations" not in video:
            raise ValueError(f"video {video['video_id']} has no annotations: it cannot be used for training")
        frame_idx = self._choose_frames(video)
        images, instances = [], []
        transforms = None
        for t in frame_idx:
            image = self._read_frame(video, t)
            if image is None:
                return None
            if transforms is None:  # one augmentation for all frames of the sample
                aug_input = T.AugInput(image)
                transforms = self.augmentations(aug_input)
                image = aug_input.image
            else:
                image = transforms.apply_image(image)
            image_shape = image.shape[:2]
            images.append(image_to_tensor(image))
            instances.append(self._frame_instances(video["annotations"][t], transforms, image_shape))
        if sum(len(i) for i in instances) < self.min_visible_instances:
            self.last_problem = (
                f"video {video['video_id']}: fewer than INPUT.MIN_VISIBLE_INSTANCES "
                f"({self.min_visible_instances}) objects visible in frames {frame_idx}"
            )
            return None
        skipped, self._skipped = self._skipped, 0
        return {
            "video_id": video["video_id"],
            "height": video["height"],
            "width": video["width"],
            "length": video["length"],
            "frame_idx": frame_idx,
            "image": images,
            "instances": instances,
            "skipped_samples": skipped,
        }

    def _read_frame(self, video: Dict[str, Any], t: int) -> Optional[np.ndarray]:
        """Frame ``t`` of ``video``, or ``None`` when it is bad and ``on_bad_frame == "skip"`` (counted)."""
        file_name = video["file_names"][t]
        try:
            return read_frame(file_name, self.image_format, (video["height"], video["width"]))
        except DatasetFormatError as e:
            if self.on_bad_frame == "fail":
                raise
            self._skipped += 1
            self.last_problem = str(e)
            if file_name not in self._warned_files:
                self._warned_files.add(file_name)
                logger.warning(
                    f"Skipping a training sample of video {video['video_id']} (frame {t}): {e} "
                    "(INPUT.ON_BAD_FRAME 'skip'; set it to 'fail' to stop instead)"
                )
            return None

    def _frame_instances(self, annotations: List[Dict[str, Any]], transforms, image_shape) -> Instances:
        annos = [
            utils.transform_instance_annotations(copy.deepcopy(a), transforms, image_shape)
            for a in annotations
            if not a.get("iscrowd", 0)
            and (not self.drop_centre_outside or box_centre_inside(a, transforms, image_shape))
        ]
        inst = utils.annotations_to_instances(annos, image_shape, mask_format="bitmask")
        inst.gt_ids = torch.tensor([a["id"] for a in annos], dtype=torch.int64)
        if not annos:  # detectron2 adds no mask field for an empty frame; keep the fields uniform
            inst.gt_masks = BitMasks(torch.zeros((0,) + tuple(image_shape), dtype=torch.bool))
        if self.recompute_boxes and len(inst):
            inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
        return utils.filter_empty_instances(inst, by_mask=True)


class VideoTestDatasetMapper:
    """Test mapper: the video's frames as a :class:`LazyVideoFrames` (read and resized on access)."""

    @configurable
    def __init__(self, *, augmentations: List[T.Augmentation], image_format: str):
        self.augmentations = augmentations
        self.image_format = image_format

    @classmethod
    def from_config(cls, cfg) -> Dict[str, Any]:
        return {"augmentations": build_video_augmentation(cfg, is_train=False), "image_format": cfg.INPUT.FORMAT}

    def __call__(self, video: Dict[str, Any]) -> Dict[str, Any]:
        frames = LazyVideoFrames(
            video["file_names"], self.augmentations, self.image_format, video["height"], video["width"]
        )
        return {
            "video_id": video["video_id"],
            "height": video["height"],
            "width": video["width"],
            "length": video["length"],
            "file_names": video["file_names"],
            "image": frames,
        }
