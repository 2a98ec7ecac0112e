"""The "Concat" feature fusion of Table 2 (§4.3): fuse F_t with F_{t-1} by a CNN on their concatenation.

The paper compares its relation-based fusion (the graph of §3.2) with "the strategy that fuses feature maps of
two frames directly by using the concatenation of them as input" and gives no layer details. Our choice, kept
parallel to the relation fusion so that the ablation changes only how the two frames interact: per FPN level
(weights shared over levels, as the heads), F̂_t = F_t + Conv3x3(ReLU(Conv1x1([F_t, F_{t-1}]))), with the last
conv zero-initialised (F̂_t = F_t at the start, like the graph's zero-initialised message MLP). In training the
reference frame k plays F_{t-1}; on a video's first frame the heads read F_t.

Shapes: B images, D channels, per level (B, D, H_l, W_l).
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

__all__ = ["ConcatFusion"]


class ConcatFusion(nn.Module):
    """[F_t, F_prev] (2D channels) -> residual correction of F_t, per level."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.mix = nn.Sequential(nn.Conv2d(2 * dim, hidden_dim, 1), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(hidden_dim, dim, 3, padding=1)
        nn.init.kaiming_uniform_(self.mix[0].weight, a=1)
        nn.init.zeros_(self.mix[0].bias)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features_t: Sequence[torch.Tensor], features_prev: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        if len(features_t) != len(features_prev):
            raise ValueError(f"ConcatFusion: {len(features_t)} target levels but {len(features_prev)} previous ones")
        return [f + self.out(self.mix(torch.cat([f, p.to(f.dtype)], dim=1))) for f, p in zip(features_t, features_prev)]
