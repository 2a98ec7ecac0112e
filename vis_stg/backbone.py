"""ResNet-FPN backbone of VisSTG with P6/P7 from C5 (RetinaNet) or from P5 (FCOS / CondInst).

VisSTG (§4.2) runs on "each output feature map from FPN", P3–P7 with 256 channels, and starts from a
COCO-trained detector. The two usual COCO sources differ only in where P6 comes from: detectron2's RetinaNet
builds P6 = conv3×3/2(C5) (2048 input channels), FCOS/CondInst (AdelaiDet) P6 = conv3×3/2(P5) (256 input
channels); P7 = conv3×3/2(ReLU(P6)) in both. ``MODEL.VIS_STG.P6_P7_FROM`` picks the layout so that the
chosen checkpoint's ``backbone.top_block.p6`` loads (module names are detectron2's ``FPN`` ones:
``backbone.bottom_up.*``, ``backbone.fpn_lateral{3,4,5}``, ``backbone.fpn_output{3,4,5}``,
``backbone.top_block.p6/p7``).
"""

from __future__ import annotations

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7

__all__ = ["build_vis_stg_resnet_fpn_backbone", "P6_P7_SOURCES"]

P6_P7_SOURCES = ("res5", "p5")


@BACKBONE_REGISTRY.register()
def build_vis_stg_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """ResNet + FPN on ``MODEL.FPN.IN_FEATURES`` + P6/P7 from ``MODEL.VIS_STG.P6_P7_FROM`` ("res5" | "p5")."""
    source = cfg.MODEL.VIS_STG.P6_P7_FROM
    if source not in P6_P7_SOURCES:
        raise ValueError(f"MODEL.VIS_STG.P6_P7_FROM must be one of {P6_P7_SOURCES}, got {source!r}")
    bottom_up = build_resnet_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    if source == "res5":
        if "res5" not in bottom_up.output_shape():
            raise ValueError("MODEL.VIS_STG.P6_P7_FROM 'res5' needs 'res5' in MODEL.RESNETS.OUT_FEATURES")
        top_block = LastLevelP6P7(bottom_up.output_shape()["res5"].channels, out_channels, in_feature="res5")
    else:
        if "res5" not in cfg.MODEL.FPN.IN_FEATURES:
            raise ValueError("MODEL.VIS_STG.P6_P7_FROM 'p5' needs 'res5' in MODEL.FPN.IN_FEATURES (P5 is its output)")
        top_block = LastLevelP6P7(out_channels, out_channels, in_feature="p5")
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
