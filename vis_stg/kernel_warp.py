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

Shapes: P = 169 kernel parameters (θ channels), D dimension of F, M detections whose kernel is warped.
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
            # align_corners=False: pixel p <-> (2p + 1) / size - 1, exact also for a size-1 map (where the
            # align_corners=True mapping sends every coordinate to pixel 0).
            grid = torch.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], dim=-1)
            sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            if depthwise:
                out = out + sampled * weight[:, 0, i, j].view(1, -1, 1, 1)
            else:
                out = out + torch.einsum("oc,bchw->bohw", weight[:, :, i, j], sampled)
    return out


class KernelWarp(nn.Module):
    """θ_k (B, P, H, W), F_k, F_t (B, D, H, W) -> θ_warp (B, P, H, W), per level with shared weights."""

    def __init__(
        self,
        feat_channels: int,
        kernel_channels: int,
        num_convs: int = 2,
        conv_dim: int = 128,
        kernel_size: int = 3,
        depthwise: bool = True,
        impl: str = "deform_conv2d",
    ):
        super().__init__()
        if impl not in ("deform_conv2d", "grid_sample"):
            raise ValueError(f"WARP.IMPL must be 'deform_conv2d' or 'grid_sample', got {impl!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"WARP.KERNEL_SIZE must be odd, got {kernel_size}")
        self.impl = impl
        layers: List[nn.Module] = []
        for i in range(num_convs):
            layers += [nn.Conv2d(feat_channels if i == 0 else conv_dim, conv_dim, 3, padding=1), nn.ReLU(inplace=True)]
        offset_conv = nn.Conv2d(conv_dim if num_convs > 0 else feat_channels, 2 * kernel_size**2, 3, padding=1)
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
        if theta_k.dtype != self.weight.dtype:  # under autocast: torchvision has no bf16 CPU kernel -> float32
            theta_k, offset = theta_k.to(self.weight.dtype), offset.to(self.weight.dtype)
        return deform_conv2d(theta_k, offset, self.weight, self.bias, padding=self.padding)

    def warp_levels(
        self, thetas_k: Sequence[torch.Tensor], feats_k: Sequence[torch.Tensor], feats_t: Sequence[torch.Tensor]
    ) -> List[torch.Tensor]:
        return [self(th, fk, ft) for th, fk, ft in zip(thetas_k, feats_k, feats_t)]

    def warp_at_cells(
        self,
        thetas_k: Sequence[torch.Tensor],
        feats_k: Sequence[torch.Tensor],
        feats_t: Sequence[torch.Tensor],
        level: torch.Tensor,
        cells: torch.Tensor,
    ) -> torch.Tensor:
        """θ_warp read at D cells only (inference: only the detections' kernels are used), equal to
        ``gather_at_cells(warp_levels(...), level, 0, cells)``. Per level: the offset CNN runs on the
        (2r+1)² patch of F_k - F_t around each cell (r = its number of 3×3 convs; positions outside the map
        are zeroed after every layer, as the full map's zero padding does), then the k·k taps sample θ_k
        bilinearly (zero outside). Maps (1, C, H_l, W_l); ``level`` (D,); ``cells`` (D, 2) integer (x, y).
        Returns (D, P). No data-dependent shapes: every level is computed for every cell and selected."""
        r = sum(isinstance(m, nn.Conv2d) for m in self.offset_net)
        k = self.weight.shape[-1]
        d = torch.arange(-r, r + 1, device=cells.device)
        tap = torch.arange(k, device=cells.device) - k // 2
        # The (2r+1)² patch of F_k - F_t around every cell, read on the cell's own level (selected per level,
        # so that the shared offset CNN runs once on D patches).
        patch, inside, xy = None, None, []
        for lvl, (fk, ft) in enumerate(zip(feats_k, feats_t)):
            h, w = fk.shape[-2:]
            x, y = cells[:, 0].clamp(0, w - 1), cells[:, 1].clamp(0, h - 1)
            xy.append((x, y))
            ys, xs = y[:, None] + d, x[:, None] + d  # (D, 2r+1)
            ins = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]  # (D, P, P)
            # F_k - F_t on the patches only (gathered from the flattened maps: no full-map difference)
            flat = (ys.clamp(0, h - 1)[:, :, None] * w + xs.clamp(0, w - 1)[:, None, :]).reshape(-1)  # (D·P·P,)
            c = fk.shape[1]
            diff = fk[0].reshape(c, h * w).index_select(1, flat) - ft[0].reshape(c, h * w).index_select(1, flat)
            diff = diff.view(c, *ins.shape).permute(1, 0, 2, 3)  # (D, C, P, P)
            on_level = (level == lvl)[:, None, None]
            patch = diff if patch is None else torch.where(on_level[:, None], diff, patch)
            inside = ins if inside is None else torch.where(on_level, ins, inside)
        inside = inside[:, None].to(patch.dtype)
        z = patch * inside
        # Unpadded 3×3 convs: each layer keeps only the positions the next one reads (7×7 -> 5×5 -> ... -> 1×1).
        shrink = 0
        for m in self.offset_net:
            if isinstance(m, nn.Conv2d):
                z = F.conv2d(z, m.weight, m.bias)
                shrink += 1
            else:
                z = m(z)
                if isinstance(m, nn.ReLU):  # the full map's zero padding seen by the next conv
                    z = z * inside[:, :, shrink : inside.shape[2] - shrink, shrink : inside.shape[3] - shrink]
        offset = z[:, :, 0, 0]  # (D, 2·k·k) at the cell
        out = None
        for lvl, theta in enumerate(thetas_k):
            h, w = theta.shape[-2:]
            x, y = xy[lvl]
            off = offset.to(theta.dtype)
            py = y.to(theta.dtype)[:, None, None] + tap[None, :, None] + off[:, 0::2].view(-1, k, k)
            px = x.to(theta.dtype)[:, None, None] + tap[None, None, :] + off[:, 1::2].view(-1, k, k)
            grid = torch.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], dim=-1)  # exact for any size
            sampled = F.grid_sample(
                theta, grid.view(1, -1, k * k, 2), mode="bilinear", padding_mode="zeros", align_corners=False
            )[0]  # (P, D, k·k)
            if self.weight.shape[1] == 1 and theta.shape[1] > 1:  # depthwise
                warped = (sampled * self.weight.view(1, -1, k * k).transpose(0, 1)).sum(-1).t()
            else:
                warped = torch.einsum("ock,cdk->do", self.weight.flatten(2), sampled)
            warped = warped + self.bias
            out = warped if out is None else torch.where((level == lvl)[:, None], warped, out)
        return out
