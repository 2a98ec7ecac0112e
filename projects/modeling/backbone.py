"""ResNet-18/34 (BasicBlock) backbones of any width, for small from-scratch models.

detectron2's ``build_resnet_backbone`` fixes ``MODEL.RESNETS.RES2_OUT_CHANNELS`` to 64 for R18/R34. The builders
here read the same ``MODEL.RESNETS`` keys (``DEPTH`` 18 or 34, ``STEM_OUT_CHANNELS``, ``RES2_OUT_CHANNELS``,
``NORM``, ``OUT_FEATURES``) and ``MODEL.BACKBONE.FREEZE_AT`` without that restriction: stage widths are
``RES2_OUT_CHANNELS × (1, 2, 4, 8)`` and the stem is ``STEM_OUT_CHANNELS`` wide, so
``STEM_OUT_CHANNELS 32  RES2_OUT_CHANNELS 32`` is a ResNet-18 at half width (a quarter of the multiply-adds).
At 64 / 64 they build exactly detectron2's R18 / R34 (same modules, same parameter names).

Registered backbones (``MODEL.BACKBONE.NAME``):

- ``build_basic_resnet_backbone``: the bottom-up network alone;
- ``build_basic_resnet_fpn_backbone``: + detectron2's FPN with a max-pooled extra level (as
  ``build_resnet_fpn_backbone``);
- ``build_basic_retinanet_resnet_fpn_backbone``: + FPN with RetinaNet's P6/P7 (as
  ``build_retinanet_resnet_fpn_backbone``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN, ResNet
from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem

_BLOCKS_PER_STAGE = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class CpuPoolStem(BasicStem):
    """detectron2's ``BasicStem`` (same modules and parameter names, same outputs) whose 3x3 / 2 max pool runs on
    a channels-last copy when no gradient is recorded on the CPU: PyTorch's contiguous-layout CPU kernel without
    indices is ~10x slower there (a frozen stage-2 segmenter, evaluation; ``benchmarks/bench_stem_pool.py``). The
    maximum is exact in either layout; the output is returned contiguous."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        if x.device.type == "cpu" and not (torch.is_grad_enabled() and x.requires_grad):
            x = x.contiguous(memory_format=torch.channels_last)
            return F.max_pool2d(x, kernel_size=3, stride=2, padding=1).contiguous()
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


@BACKBONE_REGISTRY.register()
def build_basic_resnet_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """A BasicBlock ResNet (``MODEL.RESNETS.DEPTH`` 18 or 34) with the widths of ``MODEL.RESNETS``."""
    res = cfg.MODEL.RESNETS
    if res.DEPTH not in _BLOCKS_PER_STAGE:
        raise ValueError(
            f"MODEL.RESNETS.DEPTH {res.DEPTH}: the basic ResNet backbones are ResNet-18 or -34 (BasicBlock); "
            "use build_resnet_backbone / build_resnet_fpn_backbone for deeper ResNets"
        )
    if res.NUM_GROUPS != 1 or res.RES5_DILATION != 1 or any(res.DEFORM_ON_PER_STAGE):
        raise ValueError("the basic ResNet backbones take no groups, dilation or deformable convs (MODEL.RESNETS)")
    stem = CpuPoolStem(in_channels=input_shape.channels, out_channels=res.STEM_OUT_CHANNELS, norm=res.NORM)
    stages, in_channels, out_channels = [], res.STEM_OUT_CHANNELS, res.RES2_OUT_CHANNELS
    for index, num_blocks in enumerate(_BLOCKS_PER_STAGE[res.DEPTH]):
        first_stride = 1 if index == 0 else 2
        stages.append(
            ResNet.make_stage(
                block_class=BasicBlock,
                num_blocks=num_blocks,
                stride_per_block=[first_stride] + [1] * (num_blocks - 1),
                in_channels=in_channels,
                out_channels=out_channels,
                norm=res.NORM,
            )
        )
        in_channels, out_channels = out_channels, out_channels * 2
    return ResNet(stem, stages, out_features=res.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


def _fpn(cfg, bottom_up: ResNet, top_block) -> FPN:
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_basic_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """Basic ResNet + FPN with a max-pooled extra level (the layout of ``build_resnet_fpn_backbone``)."""
    return _fpn(cfg, build_basic_resnet_backbone(cfg, input_shape), LastLevelMaxPool())


@BACKBONE_REGISTRY.register()
def build_basic_retinanet_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """Basic ResNet + FPN with RetinaNet's P6/P7 from C5 (the layout of ``build_retinanet_resnet_fpn_backbone``)."""
    bottom_up = build_basic_resnet_backbone(cfg, input_shape)
    res5_channels = bottom_up.output_shape()["res5"].channels
    return _fpn(cfg, bottom_up, LastLevelP6P7(res5_channels, cfg.MODEL.FPN.OUT_CHANNELS))
