"""An FPN backbone's outputs together with its bottom-up (ResNet) maps of the same forward pass, and their shapes."""

from __future__ import annotations

from typing import Dict, Tuple

import torch
from detectron2.layers import ShapeSpec
from torch import nn

__all__ = ["forward_with_bottom_up", "shapes_with_bottom_up"]


def forward_with_bottom_up(
    backbone: nn.Module, x: torch.Tensor
) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """``(backbone(x), backbone.bottom_up's outputs)`` from one pass: the bottom-up maps (``res2`` ... as in
    ``MODEL.RESNETS.OUT_FEATURES``) are read by a forward hook on ``backbone.bottom_up`` (detectron2's ``FPN``
    and ``YolactFPN`` keep their ResNet there), so nothing is computed twice."""
    bottom_up: Dict[str, torch.Tensor] = {}
    handle = backbone.bottom_up.register_forward_hook(lambda _m, _i, out: bottom_up.update(out))
    try:
        outputs = backbone(x)
    finally:
        handle.remove()
    return outputs, bottom_up


def shapes_with_bottom_up(backbone: nn.Module) -> Dict[str, ShapeSpec]:
    """``backbone.output_shape()`` and, when it has one, its bottom-up network's (FPN levels are named ``p*``,
    ResNet ones ``stem`` / ``res*``, so the names do not collide)."""
    shapes = dict(backbone.output_shape())
    bottom_up = getattr(backbone, "bottom_up", None)
    if bottom_up is not None:
        shapes.update({k: v for k, v in bottom_up.output_shape().items() if k not in shapes})
    return shapes
