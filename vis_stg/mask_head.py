"""CondInst segmentation branch on F̂_t (§3.4, eq. (4)(5)).

- :class:`MaskBranch`: F̂_t of the finest level -> F̂^d_t with 8 channels (the paper's 1×1 conv; optional 3×3
  convs before it, ``MASK.BRANCH_NUM_CONVS``); with ``MASK.IN_FEATURE`` F̂_t is first upsampled to a finer
  FPN level and added to it; with ``MASK.DETAIL_FEATURE`` the branch's output is upsampled to a finer bottom-up
  (ResNet) level and a 3×3 conv of that level is added (the branch's convs stay at the coarse stride).
- :class:`Controller`: per level and location, the 169 parameters θ(x, y) of a dynamic FCN (CondInst §3.2).
- :class:`DynamicMaskHead`: MaskHead([F̂^d_t, P_xy]; θ) — three 1×1 dynamic conv layers (8, 8, 1 channels,
  ReLU between) on the 8 mask channels plus the 2 relative-coordinate channels P_xy, whose offsets from the
  instance location to every mask-feature location are normalised by the instance level's size of interest
  (CondInst). Logits are computed at the mask-feature stride and bilinearly upsampled to ``MASK.OUT_STRIDE``.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.structures import Instances
from torch import nn

from .detection_head import conv_branch

__all__ = ["MaskBranch", "Controller", "DynamicMaskHead", "downsample_gt_masks"]


class MaskBranch(nn.Module):
    """(B, D, H, W) -> (B, out_channels, H, W), or at the (H', W') of ``fine``, a finer level:

    - ``detail_channels == 0`` (``MASK.IN_FEATURE``): ``fine`` (B, D, H', W') is an FPN level; the branch runs on
      ``fine`` + ``x`` bilinearly upsampled to (H', W');
    - ``detail_channels > 0`` (``MASK.DETAIL_FEATURE``): ``fine`` (B, detail_channels, H', W') is a bottom-up
      level; the output is the branch's output on ``x`` bilinearly upsampled to (H', W') plus a 3×3 conv of
      ``fine`` (not in the paper: boundary detail for small objects, at the cost of one conv to 8 channels)."""

    def __init__(
        self, in_channels: int, out_channels: int = 8, num_convs: int = 0, conv_dim: int = 128, detail_channels: int = 0
    ):
        super().__init__()
        self.layers = conv_branch(in_channels, conv_dim, num_convs, out_channels, init="kaiming")
        self.detail = None
        if detail_channels > 0:
            self.detail = nn.Conv2d(detail_channels, out_channels, 3, padding=1)
            nn.init.kaiming_uniform_(self.detail.weight, a=1)
            nn.init.zeros_(self.detail.bias)

    def forward(self, x: torch.Tensor, fine: Optional[torch.Tensor] = None) -> torch.Tensor:
        if fine is None:
            return self.layers(x)
        if self.detail is None:
            return self.layers(fine + F.interpolate(x, size=fine.shape[-2:], mode="bilinear", align_corners=False))
        coarse = F.interpolate(self.layers(x), size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return coarse + self.detail(fine)


class Controller(nn.Module):
    """θ maps: per level (B, D, H, W) -> (B, num_params, H, W) (weights shared over levels)."""

    def __init__(self, in_channels: int, num_params: int, num_convs: int = 1, conv_dim: int = 256):
        super().__init__()
        self.layers = conv_branch(in_channels, conv_dim, num_convs, num_params)

    def forward(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        return [self.layers(f) for f in features]


class DynamicMaskHead(nn.Module):
    """Eq. (4)/(5): one small FCN per instance whose weights are that instance's θ vector."""

    def __init__(
        self, in_channels: int = 8, channels: int = 8, num_layers: int = 3, feat_stride: int = 8, out_stride: int = 4
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError("MASK.HEAD_NUM_LAYERS must be >= 1")
        if feat_stride % out_stride != 0:
            raise ValueError(f"MASK.OUT_STRIDE {out_stride} must divide the mask-feature stride {feat_stride}")
        dims = [in_channels + 2] + [channels] * (num_layers - 1) + [1]
        self.weight_shapes = [(dims[i + 1], dims[i]) for i in range(num_layers)]
        self.bias_sizes = [dims[i + 1] for i in range(num_layers)]
        self.num_params = sum(o * i for o, i in self.weight_shapes) + sum(self.bias_sizes)
        self.feat_stride, self.out_stride = feat_stride, out_stride

    def forward(
        self,
        mask_feats: torch.Tensor,
        kernels: torch.Tensor,
        locations: torch.Tensor,
        batch_idx: torch.Tensor,
        soi: torch.Tensor,
    ) -> torch.Tensor:
        """``mask_feats`` (B, C, H, W) at ``feat_stride``; ``kernels`` (P, num_params); ``locations`` (P, 2)
        instance (x, y) in input pixels; ``batch_idx`` (P,); ``soi`` (P,) coordinate normaliser.
        Returns mask logits (P, H * r, W * r), r = feat_stride / out_stride."""
        _, c, h, w = mask_feats.shape
        p = kernels.shape[0]
        if p == 0:
            r = self.feat_stride // self.out_stride
            return mask_feats.new_zeros(0, h * r, w * r)
        ys = (torch.arange(h, device=kernels.device, dtype=kernels.dtype) + 0.5) * self.feat_stride
        xs = (torch.arange(w, device=kernels.device, dtype=kernels.dtype) + 0.5) * self.feat_stride
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=0).reshape(1, 2, h * w)  # (1, 2, HW)
        rel = (locations[:, :, None] - grid) / soi[:, None, None]
        x = torch.cat([rel, mask_feats[batch_idx].reshape(p, c, h * w)], dim=1)  # (P, C + 2, HW)

        n_w = sum(o * i for o, i in self.weight_shapes)
        weights = torch.split(kernels[:, :n_w], [o * i for o, i in self.weight_shapes], dim=1)
        biases = torch.split(kernels[:, n_w:], self.bias_sizes, dim=1)
        for k, ((o, i), wgt, b) in enumerate(zip(self.weight_shapes, weights, biases)):
            x = torch.bmm(wgt.reshape(p, o, i), x) + b[:, :, None]
            if k < len(self.weight_shapes) - 1:
                x = F.relu(x)
        logits = x.reshape(p, 1, h, w)
        factor = self.feat_stride // self.out_stride
        if factor > 1:
            logits = F.interpolate(logits, scale_factor=factor, mode="bilinear", align_corners=False)
        return logits[:, 0]


def downsample_gt_masks(instances: Sequence[Instances], padded_hw: Sequence[int], stride: int) -> List[torch.Tensor]:
    """GT BitMasks (N, h, w) per image -> (N, H_pad / stride, W_pad / stride) soft masks (area fractions)."""
    out = []
    for inst in instances:
        masks = inst.gt_masks.tensor.float()
        masks = F.pad(masks, (0, padded_hw[1] - masks.shape[-1], 0, padded_hw[0] - masks.shape[-2]))
        out.append(
            F.avg_pool2d(masks[:, None], stride, stride)[:, 0]
            if len(masks)
            else masks.new_zeros(0, padded_hw[0] // stride, padded_hw[1] // stride)
        )
    return out
