"""The YOLACT network heads (Bolya et al. 2019, Fig. 2-3): the prototype branch on one FPN level and the
per-anchor prediction head shared over the FPN levels.

Shapes: B images, C channels, (h, w) a level's grid, A anchors per cell, K foreground classes, k prototypes.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProtoNet", "PredictionHead"]


class ProtoNet(nn.Module):
    """Prototype branch (YOLACT Fig. 3): 3 x (conv3x3 + ReLU) -> bilinear x2 -> conv3x3 + ReLU -> conv1x1 to k
    -> ReLU. YOLACT's ReLU after the up-sampling is omitted: bilinear interpolation of ReLU outputs is already
    non-negative, so it is the identity.

    With ``detail_channels > 0`` (``DETECTOR.PROTO_DETAIL_FEATURE``, not in YOLACT): a bottom-up map at the
    prototypes' stride (e.g. ``res2`` for P3 prototypes) is added after the up-sampling through a 3×3 conv
    (+ ReLU, so the sum stays non-negative as YOLACT's input to ``post``), giving the prototypes boundary detail
    that the up-sampled P3 map lacks."""

    def __init__(self, in_channels: int, channels: int, num_prototypes: int, detail_channels: int = 0):
        super().__init__()
        self.pre = nn.Sequential(
            *[
                m
                for i in range(3)
                for m in (nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1), nn.ReLU(inplace=True))
            ]
        )
        self.post = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(channels, num_prototypes, 1)
        )
        self.detail = None
        if detail_channels > 0:
            self.detail = nn.Sequential(nn.Conv2d(detail_channels, channels, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, detail: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, C, h, w) [, detail (B, C_d, 2h, 2w)] -> (B, k, 2h, 2w) non-negative prototypes."""
        x = F.interpolate(self.pre(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        if self.detail is not None:
            if detail is None or detail.shape[-2:] != x.shape[-2:]:
                got = None if detail is None else tuple(detail.shape[-2:])
                raise ValueError(f"PROTO_DETAIL_FEATURE: expected a {tuple(x.shape[-2:])} map, got {got}")
            x = x + self.detail(detail)
        return F.relu(self.post(x))


class PredictionHead(nn.Module):
    """Per-anchor head shared over FPN levels: conv3x3 + ReLU, then class (A(K+1)), box (4A), coefficient
    (kA, tanh) convolutions."""

    def __init__(self, in_channels: int, channels: int, num_anchors: int, num_classes: int, num_prototypes: int):
        super().__init__()
        self.num_anchors, self.num_classes, self.num_prototypes = num_anchors, num_classes, num_prototypes
        self.tower = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True))
        self.cls = nn.Conv2d(channels, num_anchors * (num_classes + 1), 3, padding=1)
        self.box = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        self.coef = nn.Conv2d(channels, num_anchors * num_prototypes, 3, padding=1)
        for conv in (self.cls, self.box, self.coef):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        # Start with 1% total foreground probability per anchor (stable softmax training with OHEM).
        prior = 0.01
        bias = self.cls.bias.view(num_anchors, num_classes + 1)
        bias.data[:, num_classes] = math.log(num_classes * (1 - prior) / prior)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, h, w) -> class logits (B, hwA, K+1), deltas (B, hwA, 4), coefficients (B, hwA, k)."""
        t = self.tower(x)
        b = x.shape[0]

        def flat(y: torch.Tensor, c: int) -> torch.Tensor:  # (B, A*c, h, w) -> (B, h*w*A, c)
            return y.permute(0, 2, 3, 1).reshape(b, -1, c)

        coeffs = torch.tanh(flat(self.coef(t), self.num_prototypes))
        return flat(self.cls(t), self.num_classes + 1), flat(self.box(t), 4), coeffs
