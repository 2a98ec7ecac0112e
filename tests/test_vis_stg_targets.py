"""FPN level assignment of VisSTG's GT objects (FCOS rule vs max side)."""

import pytest
import torch
from detectron2.structures import Boxes, Instances

from vis_stg.targets import assign_centers


def _instances(sides):
    inst = Instances((1024, 1024))
    inst.gt_boxes = Boxes(torch.tensor([[10.0, 10.0, 10.0 + s, 10.0 + s / 2] for s in sides]))
    inst.gt_classes = torch.zeros(len(sides), dtype=torch.long)
    return inst


SHAPES = [(128, 128), (64, 64), (32, 32), (16, 16), (8, 8)]
STRIDES = [8, 16, 32, 64, 128]
SOI = [64, 128, 256, 512]


@pytest.mark.parametrize(
    "rule,expected",
    [
        # max side 100 -> distance 50 < 64: P3 (FCOS); 100 in [64, 128): P4 under max_side.
        ("fcos", [0, 0, 1, 2, 3, 3]),
        ("max_side", [0, 1, 2, 3, 4, 4]),
    ],
)
def test_level_assignment(rule, expected):
    sides = [40, 100, 200, 400, 800, 1010]
    t = assign_centers([_instances(sides)], SHAPES, STRIDES, SOI, num_classes=1, level_assignment=rule)
    assert t.level.tolist() == expected


def test_fcos_boundaries_are_half_the_side():
    # FCOS ranges are on the max regression distance: side 127 -> 63.5 (P3), side 129 -> 64.5 (P4).
    t = assign_centers([_instances([127, 129, 255, 257])], SHAPES, STRIDES, SOI, num_classes=1)
    assert t.level.tolist() == [0, 1, 1, 2]


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="LEVEL_ASSIGNMENT"):
        assign_centers([_instances([40])], SHAPES, STRIDES, SOI, num_classes=1, level_assignment="area")
