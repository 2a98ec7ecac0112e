"""Mask-information propagation: warp the reference frame's dynamic kernels θ_k to frame t (§3.4, Fig. 4).

A small CNN on the feature difference F_k - F_t predicts, per location, 18 offsets (x and y for each tap of
a 3×3 kernel); a deformable convolution (``torchvision.ops.deform_conv2d``) with these offsets, applied to
the θ_k map, gives θ_warp, which decodes masks through eq. (5).

Open choices (documented, configurable): the deformable conv is depthwise by default (``WARP.DEPTHWISE``),
i.e. every one of the 169 kernel parameters is resampled from its own channel at the 9 offset positions —
a learned warp, cheap at 169 channels — or a full 169→169 conv. It starts as the identity (centre tap 1,
offsets 0: the offset conv is zero-initialised, as is usual for deformable convs), so θ_warp = θ_k before
training. ``WARP.IMPL`` picks the operator: ``deform_conv2d`` (torchvision) or ``grid_sample``, the same
deformable convolution written as k·k bilinear ``F.grid_sample`` calls (:func:`deform_conv2d_by_sampling`,
tested equal to torchvision's); torchvision's CPU backward is ~6× slower, so CPU training configs use it.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

__all__ = ["KernelWarp", "deform_conv2d_by_sampling"]


def deform_conv2d_by_sampling(
    x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """``torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=k // 2)`` (stride 1, no dilation, one
    offset group, odd k) from bilinear sampling: tap (i, j) reads x at (y + i - k//2 + Δy, x + j - k//2 + Δx)
    with offsets laid out as torchvision's ((Δy, Δx) per tap, row-major), zero outside the map.
    ``weight``: (C_out, C_in / groups, k, k) with groups = 1 or C_in (depthwise, C_out = C_in)."""
    b, c, h, w = x.shape
    k = weight.shape[-1]
    depthwise = weight.shape[1] == 1 and c > 1
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
    out = bias.view(1, -1, 1, 1)
    for i in range(k):
        for j in range(k):
            n = i * k + j
            py = ys + (i - k // 2) + offset[:, 2 * n]
            px = xs + (j - k // 2) + offset[:, 2 * n + 1]
            # Pixel-centre normalisation (align_corners=False): exact for 1-cell-wide maps too, where the
            # align_corners=True form collapses every coordinate onto pixel 0 instead of zero padding.
            grid = torch.stack([(px + 0.5) * (2 / w) - 1, (py + 0.5) * (2 / h) - 1], dim=-1)
            sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            if depthwise:
                out = out + sampled * weight[:, 0, i, j].view(1, -1, 1, 1)
            else:
                out = out + torch.einsum("oc,bchw->bohw", weight[:, :, i, j], sampled)
    return out


class KernelWarp(nn.Module):
    """θ_k (B, P, H, W), F_k, F_t (B, D, H, W) -> θ_warp (B, P, H, W), per level with shared weights."""

    def __init__(self, feat_channels: int, kernel_channels: int, num_convs: int = 2, conv_dim: int = 128,
                 kernel_size: int = 3, depthwise: bool = True, impl: str = "deform_conv2d"):
        super().__init__()
        if impl not in ("deform_conv2d", "grid_sample"):
            raise ValueError(f"WARP.IMPL must be 'deform_conv2d' or 'grid_sample', got {impl!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"WARP.KERNEL_SIZE must be odd, got {kernel_size}")
        self.impl = impl
        layers: List[nn.Module] = []
        for i in range(num_convs):
            layers += [nn.Conv2d(feat_channels if i == 0 else conv_dim, conv_dim, 3, padding=1),
                       nn.ReLU(inplace=True)]
        offset_conv = nn.Conv2d(conv_dim if num_convs > 0 else feat_channels, 2 * kernel_size ** 2, 3, padding=1)
        for m in layers:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(offset_conv.weight)
        nn.init.zeros_(offset_conv.bias)
        self.offset_net = nn.Sequential(*layers, offset_conv)

        in_per_group = 1 if depthwise else kernel_channels
        weight = torch.zeros(kernel_channels, in_per_group, kernel_size, kernel_size)
        centre = kernel_size // 2
        if depthwise:
            weight[:, 0, centre, centre] = 1.0
        else:
            weight[torch.arange(kernel_channels), torch.arange(kernel_channels), centre, centre] = 1.0
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(kernel_channels))
        self.padding = centre

    def offsets(self, feat_k: torch.Tensor, feat_t: torch.Tensor) -> torch.Tensor:
        """(B, 2·k·k, H, W) sampling offsets from F_k - F_t."""
        return self.offset_net(feat_k - feat_t)

    def forward(self, theta_k: torch.Tensor, feat_k: torch.Tensor, feat_t: torch.Tensor) -> torch.Tensor:
        offset = self.offsets(feat_k, feat_t).to(theta_k.dtype)
        if self.impl == "grid_sample":
            return deform_conv2d_by_sampling(theta_k, offset, self.weight, self.bias)
        return deform_conv2d(theta_k, offset, self.weight, self.bias, padding=self.padding)

    def warp_levels(self, thetas_k: Sequence[torch.Tensor], feats_k: Sequence[torch.Tensor],
                    feats_t: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        return [self(th, fk, ft) for th, fk, ft in zip(thetas_k, feats_k, feats_t)]
