"""YOLACT's feature pyramid (Bolya et al. 2019, §3 and Fig. 2; dbolya/yolact ``FPN``) on a detectron2 ResNet.

Differences from detectron2's :class:`~detectron2.modeling.backbone.FPN` that change the numbers:

* the top-down path resizes bilinearly (``align_corners=False``) to the exact size of the next lateral map, so
  any input size works without padding (550 x 550 gives C3-C5 of 69, 35, 18 cells);
* each output 3x3 conv of P3-P5 is followed by a ReLU;
* P6 and P7 are stride-2 3x3 convs (padding 1), P6 from the ReLU'd P5 and P7 from P6, with no ReLU in between.

The ResNet itself is detectron2's: YOLACT's torchvision-style bottleneck is ``RESNETS.STRIDE_IN_1X1 False``
(stride on the 3x3 conv); its BatchNorm eps is 1e-5, detectron2's default for ``BN`` and ``FrozenBN``.
"""

from __future__ import annotations

import math
from typing import Dict, List

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import Backbone, build_resnet_backbone
from torch import nn

__all__ = ["YolactFPN", "build_yolact_resnet_fpn_backbone"]


class YolactFPN(Backbone):
    """``bottom_up`` levels ``in_features`` (e.g. res3-res5) -> p3..p5 (+ p6, p7 when ``num_downsample`` = 2).

    Parameter names follow detectron2's FPN (``fpn_lateral{l}``, ``fpn_output{l}``) plus ``p6``, ``p7``.
    """

    def __init__(self, bottom_up: Backbone, in_features: List[str], out_channels: int, num_downsample: int = 2):
        super().__init__()
        shapes = bottom_up.output_shape()
        self.bottom_up, self.in_features = bottom_up, list(in_features)
        levels = [int(round(math.log2(shapes[f].stride))) for f in in_features]
        self._levels = levels
        for f, lvl in zip(in_features, levels):
            self.add_module(f"fpn_lateral{lvl}", nn.Conv2d(shapes[f].channels, out_channels, 1))
            self.add_module(f"fpn_output{lvl}", nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.num_downsample = num_downsample
        for i in range(num_downsample):
            lvl = levels[-1] + 1 + i
            self.add_module(f"p{lvl}", nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1))
        all_levels = levels + [levels[-1] + 1 + i for i in range(num_downsample)]
        self._out_features = [f"p{lvl}" for lvl in all_levels]
        self._out_feature_strides = {f"p{lvl}": 2**lvl for lvl in all_levels}
        self._out_feature_channels = {f: out_channels for f in self._out_features}

    @property
    def size_divisibility(self) -> int:
        return 0  # bilinear top-down to the lateral's size: no padding needed

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: (B, 3, H, W) normalised images -> {"p3": (B, C, ceil(H/8), ...), ..., "p7": ...}."""
        feats = self.bottom_up(x)
        outs: List[torch.Tensor] = []
        top = None
        for f, lvl in zip(reversed(self.in_features), reversed(self._levels)):
            lateral = getattr(self, f"fpn_lateral{lvl}")(feats[f])
            if top is not None:
                lateral = lateral + F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            top = lateral
            outs.insert(0, F.relu(getattr(self, f"fpn_output{lvl}")(lateral)))
        for i in range(self.num_downsample):
            outs.append(getattr(self, f"p{self._levels[-1] + 1 + i}")(outs[-1]))
        return dict(zip(self._out_features, outs))

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            f: ShapeSpec(channels=self._out_feature_channels[f], stride=self._out_feature_strides[f])
            for f in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_yolact_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> YolactFPN:
    """detectron2 ResNet (``MODEL.RESNETS.*``) + YOLACT FPN on ``MODEL.FPN.IN_FEATURES`` with
    ``MODEL.FPN.OUT_CHANNELS`` channels and P6/P7 (YOLACT's ``num_downsample`` 2)."""
    bottom_up = build_resnet_backbone(cfg, input_shape)
    return YolactFPN(bottom_up, cfg.MODEL.FPN.IN_FEATURES, cfg.MODEL.FPN.OUT_CHANNELS, num_downsample=2)
