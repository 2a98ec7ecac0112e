"""experiments/mask_stride_ceiling.py: a mask survives its own pixel grid exactly, and loses more the coarser the
grid, most for thin structures."""

import numpy as np
import pytest

from experiments.mask_stride_ceiling import grid_iou


def _ring(width):
    m = np.zeros((48, 48), dtype=np.uint8)
    m[8:40, 8:40] = 1
    m[8 + width : 40 - width, 8 + width : 40 - width] = 0
    return m


def test_stride_one_is_exact_and_coarser_grids_lose_more():
    block = np.zeros((32, 48), dtype=np.uint8)
    block[8:24, 16:40] = 1
    for m in (block, _ring(6)):
        ious = [grid_iou(m, s) for s in (1, 2, 4, 8)]
        assert ious[0] == pytest.approx(1.0)
        assert ious == sorted(ious, reverse=True) and ious[-1] < ious[0]
    assert grid_iou(_ring(6), 8) < grid_iou(block, 8) - 0.2  # the 6-pixel ring suffers most at stride 8
