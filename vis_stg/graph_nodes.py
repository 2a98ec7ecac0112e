"""Reference-instance nodes of the spatial-temporal graph (§3.2): ROIAlign of the reference frame's features at
each instance's box, "downsampled and flattened" to the feature dim D. Used by :class:`.graph.SpatialTemporalGraph`.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn
from torchvision.ops import roi_align

__all__ = ["InstanceNodeEncoder"]


class InstanceNodeEncoder(nn.Module):
    """Reference-instance node features: ROIAlign of F_k at the box, "downsampled and flattened" to D (§3.2).

    ``pool="avg"`` averages the R×R bins (the node lives in F's feature space, like the pixel nodes it is
    compared with in |h_i - h_j|); ``pool="linear"`` flattens the R×R×D crop through a Linear layer.
    """

    def __init__(self, dim: int, resolution: int = 7, sampling_ratio: int = 0, pool: str = "avg"):
        super().__init__()
        if pool not in ("avg", "linear"):
            raise ValueError(f"GRAPH.NODE_POOL must be 'avg' or 'linear', got {pool!r}")
        self.resolution, self.sampling_ratio, self.pool = resolution, sampling_ratio, pool
        self.fc = nn.Linear(dim * resolution * resolution, dim) if pool == "linear" else None

    def forward(
        self, features: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor], strides: Sequence[int]
    ) -> List[torch.Tensor]:
        """``features``: per level (B, D, H, W); ``boxes``: per image (N_b, 4) XYXY input pixels.
        Returns per level (N, D), N = Σ N_b, instances ordered image by image."""
        rois = torch.cat(
            [torch.cat([b.new_full((len(b), 1), float(i)), b.float()], dim=1) for i, b in enumerate(boxes)]
        )
        out = []
        for feat, stride in zip(features, strides):
            crop = roi_align(
                feat,
                rois.to(feat.dtype),
                self.resolution,
                spatial_scale=1.0 / stride,
                sampling_ratio=self.sampling_ratio,
                aligned=True,
            )
            out.append(crop.mean(dim=(2, 3)) if self.fc is None else self.fc(crop.flatten(1)))
        return out
