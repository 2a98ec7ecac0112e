"""Training samples from still images: single frames (RGNN-VIS stage 1) or pseudo-videos (VisSTG, RGNN stage 2).

A pseudo-video of ``INPUT.SAMPLING_FRAME_NUM`` frames is made from ONE annotated image: every frame gets its own,
independent random :class:`RandomZoomShiftFlip` (zoom = crop / scale, shift = translation, optional flip) and
then the sample's common augmentation (``build_video_augmentation``: resize, flip, optional crop, sampled once so
that every frame has the same size, as in a real clip). Image and masks of a frame go through the same
transform; an object keeps its track id (``gt_ids``) in every frame and is absent from a frame its window cut
off. The output has the format of :class:`VideoDatasetMapper` (docs/interfaces.md).

Image records (:mod:`projects.data.image_sources`): ``{"file_name", "height", "width", "image_id",
"annotations": [{"id", "category_id", "bbox", "bbox_mode", "segmentation", "iscrowd"}]}``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, Instances

from .errors import DatasetFormatError
from .frames import image_to_tensor, read_frame
from .video_mapper import build_video_augmentation

__all__ = ["RandomZoomShiftFlip", "PseudoVideoMapper", "MixedSourceMapper", "is_image_record"]

logger = logging.getLogger(__name__)


def is_image_record(record: Dict[str, Any]) -> bool:
    """A still-image dataset dict (``file_name``) rather than a video (``file_names``)."""
    return "file_name" in record and "file_names" not in record


class RandomZoomShiftFlip(T.Augmentation):
    """Random zoom, shift and horizontal flip that keep the image size (one :class:`ExtentTransform`).

    The source window is the image scaled by ``s ~ U(scale_range)`` about its centre (``s < 1`` crops and
    magnifies, ``s > 1`` zooms out with zero padding) and shifted by ``(U(-.5, .5) * dx * W, U(-.5, .5) * dy * H)``
    for ``shift_range = (dx, dy)``; it is resampled to the input size (H, W). Then a flip with ``flip_prob``.
    """

    def __init__(self, scale_range: Sequence[float], shift_range: Sequence[float], flip_prob: float, rng=None):
        super().__init__()
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"INPUT.PSEUDO_VIDEO.SCALE_RANGE must be 0 < low <= high, got {tuple(scale_range)}")
        if min(shift_range) < 0 or not 0 <= flip_prob <= 1:
            raise ValueError("INPUT.PSEUDO_VIDEO.SHIFT_RANGE must be >= 0 and FLIP_PROB in [0, 1]")
        self.scale_range, self.shift_range, self.flip_prob = tuple(scale_range), tuple(shift_range), flip_prob
        # np.random (reseeded per loader worker by detectron2) unless a seeded RandomState is given
        self.rng = rng if rng is not None else np.random

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        s = self.rng.uniform(*self.scale_range)
        cx = 0.5 * w + self.shift_range[0] * w * (self.rng.rand() - 0.5)
        cy = 0.5 * h + self.shift_range[1] * h * (self.rng.rand() - 0.5)
        rect = (cx - 0.5 * s * w, cy - 0.5 * s * h, cx + 0.5 * s * w, cy + 0.5 * s * h)
        transforms = [T.ExtentTransform(src_rect=rect, output_size=(h, w))]
        if self.rng.rand() < self.flip_prob:
            transforms.append(T.HFlipTransform(w))
        return T.TransformList(transforms)


class PseudoVideoMapper:
    """Image record -> a training sample of ``num_frames`` independently augmented copies (see module doc).

    Crowd annotations are dropped; boxes are recomputed from the transformed masks. Returns ``None`` (the
    loader draws another sample) when fewer than ``min_visible_instances`` objects remain in all frames, or for
    a missing / corrupt image under ``INPUT.ON_BAD_FRAME "skip"`` (counted in ``"skipped_samples"`` of the next
    returned sample, like :class:`VideoDatasetMapper`; ``"fail"`` raises the error naming the file).
    """

    @configurable
    def __init__(
        self,
        *,
        augmentations: List[T.Augmentation],
        frame_augmentation: T.Augmentation,
        image_format: str,
        num_frames: int,
        min_visible_instances: int = 1,
        on_bad_frame: str = "skip",
    ):
        if num_frames < 1:
            raise ValueError(f"SAMPLING_FRAME_NUM must be >= 1, got {num_frames}")
        if on_bad_frame not in ("skip", "fail"):
            raise ValueError(f"INPUT.ON_BAD_FRAME must be 'skip' or 'fail', got {on_bad_frame!r}")
        self.on_bad_frame = on_bad_frame
        self._skipped = 0  # samples skipped since the last returned one (reported in it, as VideoDatasetMapper)
        self._warned_files: set = set()
        self.last_problem: Optional[str] = None  # why the last None was returned (as VideoDatasetMapper)
        self.augmentations = T.AugmentationList(augmentations)
        self.frame_augmentation = frame_augmentation
        self.image_format = image_format
        self.num_frames = num_frames
        self.min_visible_instances = min_visible_instances
        logger.info(f"[PseudoVideoMapper] per frame: {frame_augmentation}; per sample: {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True, seed: Optional[int] = None) -> Dict[str, Any]:
        p = cfg.INPUT.PSEUDO_VIDEO
        rng = np.random.RandomState(seed) if seed is not None else None
        return {
            "augmentations": build_video_augmentation(cfg, is_train),
            "frame_augmentation": RandomZoomShiftFlip(p.SCALE_RANGE, p.SHIFT_RANGE, p.FLIP_PROB, rng),
            "image_format": cfg.INPUT.FORMAT,
            "num_frames": cfg.INPUT.SAMPLING_FRAME_NUM,
            "min_visible_instances": cfg.INPUT.MIN_VISIBLE_INSTANCES,
            "on_bad_frame": cfg.INPUT.ON_BAD_FRAME,
        }

    def __call__(self, record: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        if "annotations" not in record:
            raise ValueError(f"image {record['file_name']} has no annotations: it cannot be used for training")
        annotations = [a for a in record["annotations"] if not a.get("iscrowd", 0)]
        if any("id" not in a for a in annotations):  # a plain detectron2 image dict: ids = order in the image
            annotations = [dict(a, id=i + 1) for i, a in enumerate(annotations)]
        if len({a["id"] for a in annotations}) != len(annotations):
            raise ValueError(f"image {record['file_name']}: annotation ids are not unique")
        try:
            source = read_frame(record["file_name"], self.image_format, (record["height"], record["width"]))
        except DatasetFormatError as e:
            if self.on_bad_frame == "fail":
                raise
            self._skipped += 1
            self.last_problem = str(e)
            if record["file_name"] not in self._warned_files:
                self._warned_files.add(record["file_name"])
                logger.warning(f"Skipping a training image: {e} (INPUT.ON_BAD_FRAME 'skip'; 'fail' stops instead)")
            return None
        images, instances, common = [], [], None
        for _ in range(self.num_frames):
            aug_input = T.AugInput(source.copy())
            transforms = self.frame_augmentation(aug_input)  # independent per frame
            if common is None:  # one resize / flip / crop for the sample: all frames share one size
                common = self.augmentations(aug_input)
            else:
                aug_input.transform(common)
            transforms = transforms + common
            image = aug_input.image
            images.append(image_to_tensor(image))
            instances.append(self._frame_instances(annotations, transforms, image.shape[:2]))
        if sum(len(i) for i in instances) < self.min_visible_instances:
            self.last_problem = f"image {record['file_name']}: no object visible after the pseudo-video augmentation"
            return None
        skipped, self._skipped = self._skipped, 0
        return {
            "video_id": record.get("image_id", record.get("video_id")),
            "height": record["height"],
            "width": record["width"],
            "length": 1,
            "frame_idx": [0] * self.num_frames,
            "image": images,
            "instances": instances,
            "skipped_samples": skipped,
        }

    @staticmethod
    def _frame_instances(annotations: List[Dict[str, Any]], transforms, image_shape) -> Instances:
        annos = [utils.transform_instance_annotations(copy.deepcopy(a), transforms, image_shape) for a in annotations]
        inst = utils.annotations_to_instances(annos, image_shape, mask_format="bitmask")
        inst.gt_ids = torch.tensor([a["id"] for a in annos], dtype=torch.int64)
        if not annos:
            inst.gt_masks = BitMasks(torch.zeros((0,) + tuple(image_shape), dtype=torch.bool))
        if len(inst):  # the window may cut objects: boxes from the transformed masks
            inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
        return utils.filter_empty_instances(inst, by_mask=True)


class MixedSourceMapper:
    """Routes video records to the video mapper and image records to the pseudo-video mapper."""

    def __init__(self, video_mapper, image_mapper):
        self.video_mapper, self.image_mapper = video_mapper, image_mapper

    def __call__(self, record: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        mapper = self.image_mapper if is_image_record(record) else self.video_mapper
        out = mapper(record)
        if out is None:
            self.last_problem = getattr(mapper, "last_problem", None)
        return out
