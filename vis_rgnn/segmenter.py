"""RGNN-VIS stage 1 as a plain detectron2 image instance segmenter (``META_ARCHITECTURE YolactSegmenter``).

Backbone + :class:`~vis_rgnn.detector.YolactDetector` with the same parameter names as ``RGNNVIS``
(``backbone.*``, ``detector.*``), so one checkpoint (e.g. ``vis_rgnn/convert_yolact.py``'s) loads into both.
Training takes detectron2 image dicts (``image``, ``instances``); inference is the standard image call
(:func:`vis_rgnn.image_input.segment_images`). ``configs/vis_rgnn/yolact_R50_coco.yaml`` is YOLACT-R50 on COCO.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import ImageList
from torch import nn

from projects.modeling.bottom_up_tap import shapes_with_bottom_up
from projects.modeling.online import check_num_classes

from .detector import YolactDetector, segmenter_features
from .image_input import channel_flip, prepare_images, segment_images, training_images
from .yolact_fpn import YolactFPN

__all__ = ["YolactSegmenter"]


@META_ARCH_REGISTRY.register()
class YolactSegmenter(nn.Module):
    """YOLACT (Bolya et al. 2019) on single images; the RGNN-VIS segmenter without the tracker."""

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        detector: YolactDetector,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        test_resize: Sequence[int] = (),
        flip_channels: bool = False,
    ):
        super().__init__()
        self.backbone, self.detector = backbone, detector
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        if test_resize and len(test_resize) != 2:
            raise ValueError(f"MODEL.RGNN.TEST_RESIZE must be [] or [height, width], got {list(test_resize)}")
        self.test_resize, self.flip_channels = tuple(test_resize), flip_channels
        self.size_divisibility = segmenter_size_divisibility(backbone)

    @classmethod
    def from_config(cls, cfg):
        check_num_classes(cfg.MODEL.NUM_CLASSES, "YolactSegmenter")
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "detector": YolactDetector(cfg, shapes_with_bottom_up(backbone)),
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "test_resize": tuple(cfg.MODEL.RGNN.TEST_RESIZE),
            "flip_channels": channel_flip(cfg.INPUT.FORMAT, cfg.MODEL.RGNN.NETWORK_FORMAT),
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, images: Sequence[torch.Tensor]) -> ImageList:
        resize = () if self.training else self.test_resize
        return prepare_images(
            images, self.pixel_mean, self.pixel_std, self.size_divisibility, resize, self.flip_channels
        )

    def forward(self, batched_inputs: List[Dict[str, Any]]):
        """Training: dict of detector losses. Inference: ``[{"instances": Instances}]`` per image."""
        if not self.training:
            return segment_images(self, batched_inputs)
        frames, instances = training_images(batched_inputs)  # images, or the frames of train_net's video clips
        images = self.preprocess(frames)
        gt = [x.to(self.device) for x in instances]
        features = segmenter_features(self.backbone, self.detector, images.tensor)
        return self.detector(features, images.image_sizes, gt, input_size=tuple(images.tensor.shape[-2:]))


def segmenter_size_divisibility(backbone: nn.Module) -> int:
    """Padding multiple of the input: none for YOLACT's FPN (bilinear top-down to each lateral's size), else the
    largest stride of the bottom-up levels feeding detectron2's FPN (P6/P7 are strided convs)."""
    if isinstance(backbone, YolactFPN):
        return 0
    bottom_up = backbone.bottom_up.output_shape()
    return max(bottom_up[f].stride for f in backbone.in_features)
