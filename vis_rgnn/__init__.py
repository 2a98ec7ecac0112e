"""RGNN-VIS: Learning Video Instance Segmentation with Recurrent Graph Neural Networks (Johnander et al.)."""

from .config import add_rgnn_config
from .meta_arch import RGNNVIS  # registers the meta-architecture
from .segmenter import YolactSegmenter  # registers the image-only meta-architecture
from .yolact_fpn import build_yolact_resnet_fpn_backbone  # registers the YOLACT FPN backbone

__all__ = ["add_rgnn_config", "RGNNVIS", "YolactSegmenter", "build_yolact_resnet_fpn_backbone"]
