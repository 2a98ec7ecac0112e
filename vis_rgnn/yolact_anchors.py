"""YOLACT's anchor layout (Bolya et al. 2019, §4 "Prediction head"; dbolya/yolact ``PredictionModule.make_priors``).

Per feature level of size (h_l, w_l), locations in row-major order (row j, then column i) and, at each
location, one anchor per aspect ratio in the configured order (YOLACT: 1, 1/2, 2):

* centre ``((i + 0.5) / w_l, (j + 0.5) / h_l)`` of the input -- relative to the *feature map size*, not
  ``stride * (i + 0.5)`` (a 550-pixel input has a 69-cell P3, so the two differ);
* width ``size * sqrt(ar)`` pixels and, YOLACT's square-anchor quirk (``use_square_anchors``), the same height.
  Without the quirk the height is ``size / sqrt(ar)``.

YOLACT states sizes relative to its 550-pixel input (``use_pixel_scales``); here they are pixels of the network
input, which is the same at 550 x 550 and keeps anchors square in pixels for other input sizes.

``reference_size`` > 0 (``MODEL.RGNN.DETECTOR.ANCHOR_REFERENCE_SIZE``) is the authors' RGNN-VIS release
(``rgnnvis/models/yolact/yolact.py``, ``make_priors_sa`` with ``max_size=500``): width and height are
``size * sqrt(ar) / reference_size`` and ``size / sqrt(ar) / reference_size`` *of the input* (normalised, so
non-square in pixels when the input is not square, e.g. 480 x 864), independent of the input size.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
from detectron2.structures import Boxes
from torch import nn

__all__ = ["YolactAnchorGenerator"]


class YolactAnchorGenerator(nn.Module):
    """``sizes[l]``: anchor sizes of level l (one per level in YOLACT); ``aspect_ratios[l]``: width / height."""

    def __init__(
        self,
        sizes: Sequence[Sequence[float]],
        aspect_ratios: Sequence[Sequence[float]],
        square: bool = True,
        reference_size: float = 0.0,
    ):
        super().__init__()
        if reference_size < 0:
            raise ValueError(f"ANCHOR_REFERENCE_SIZE must be >= 0 (0: pixels of the input), got {reference_size}")
        self.reference_size = float(reference_size)
        if len(aspect_ratios) == 1:
            aspect_ratios = list(aspect_ratios) * len(sizes)
        if len(aspect_ratios) != len(sizes):
            raise ValueError(f"ANCHOR_GENERATOR.ASPECT_RATIOS has {len(aspect_ratios)} levels, SIZES {len(sizes)}")
        self.sizes = [list(map(float, s)) for s in sizes]
        self.aspect_ratios = [list(map(float, a)) for a in aspect_ratios]
        self.square = square
        self._cache: dict = {}  # (grid sizes, input size, device) -> priors; YOLACT caches them the same way

    @property
    def num_cell_anchors(self) -> List[int]:
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def cell_shapes(self, level: int) -> List[Tuple[float, float]]:
        """(width, height) in pixels of the anchors at one location, in YOLACT's order (sizes, then ratios)."""
        out = []
        for size in self.sizes[level]:
            for ar in self.aspect_ratios[level]:
                w = size * math.sqrt(ar)
                out.append((w, w if self.square else size / math.sqrt(ar)))
        return out

    def level_priors(
        self, level: int, grid_size: Tuple[int, int], input_size: Tuple[int, int], device: torch.device = None
    ) -> torch.Tensor:
        """(h * w * A, 4) priors (cx, cy, w, h) of one level, relative to the input of size (H, W)."""
        h, w = grid_size
        height, width = input_size
        # float64 on the CPU, then float32 on ``device``: the values YOLACT computes in Python floats and stores
        # as float32 (callers cache the result, see normalized_priors)
        f64, target, device = torch.float64, device, None
        shapes = torch.tensor(self.cell_shapes(level), dtype=f64, device=device)  # (A, 2) pixels
        a = shapes.shape[0]
        cy = (torch.arange(h, dtype=f64, device=device) + 0.5) / h
        cx = (torch.arange(w, dtype=f64, device=device) + 0.5) / w
        cy, cx = torch.meshgrid(cy, cx, indexing="ij")  # row-major: j then i
        centres = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2).expand(-1, a, 2)
        ref = [self.reference_size] * 2 if self.reference_size > 0 else [width, height]
        wh = (shapes / torch.tensor(ref, dtype=f64, device=device)).expand(h * w, a, 2)
        return torch.cat([centres, wh], dim=-1).reshape(-1, 4).float().to(target)

    def normalized_priors(
        self, grid_sizes: Sequence[Tuple[int, int]], input_size: Tuple[int, int], device: torch.device = None
    ) -> torch.Tensor:
        """YOLACT's ``priors``: all levels concatenated, (sum_l h_l * w_l * A, 4) as (cx, cy, w, h) relative
        to the input of size ``input_size`` = (H, W)."""
        if len(grid_sizes) != len(self.sizes):
            raise ValueError(f"{len(grid_sizes)} feature levels for {len(self.sizes)} anchor levels")
        key = (tuple(map(tuple, grid_sizes)), tuple(input_size), str(device))
        if key not in self._cache:
            if len(self._cache) > 16:  # multi-scale inputs: bounded memory
                self._cache.clear()
            self._cache[key] = torch.cat(
                [self.level_priors(lvl, g, input_size, device) for lvl, g in enumerate(grid_sizes)], 0
            )
        return self._cache[key]

    def forward(self, features: List[torch.Tensor], input_size: Tuple[int, int]) -> List[Boxes]:
        """One Boxes (h_l * w_l * A, 4) XYXY in input pixels per level, same order as the head's outputs."""
        if len(features) != len(self.sizes):
            raise ValueError(f"{len(features)} feature levels for {len(self.sizes)} anchor levels")
        height, width = input_size
        grids = [tuple(x.shape[-2:]) for x in features]
        p = self.normalized_priors(grids, input_size, features[0].device)
        p = p * p.new_tensor([width, height, width, height])
        xyxy = torch.cat([p[:, :2] - p[:, 2:] / 2, p[:, :2] + p[:, 2:] / 2], dim=1)
        counts = [h * w * n for (h, w), n in zip(grids, self.num_cell_anchors)]
        return [Boxes(b) for b in xyxy.split(counts)]
