"""The basic (BasicBlock) ResNet backbones of any width: at 64 channels they are detectron2's R18 exactly."""

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_backbone

import projects.modeling  # noqa: F401  (registers the backbones)


def _cfg(name: str, width: int, depth: int = 18):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = name
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = width
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = width
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    return cfg


@pytest.mark.parametrize(
    "ours, detectron2_name",
    [
        ("build_basic_resnet_fpn_backbone", "build_resnet_fpn_backbone"),
        ("build_basic_retinanet_resnet_fpn_backbone", "build_retinanet_resnet_fpn_backbone"),
    ],
)
def test_full_width_is_detectron2_r18(ours, detectron2_name):
    torch.manual_seed(0)
    reference = build_backbone(_cfg(detectron2_name, 64)).eval()
    model = build_backbone(_cfg(ours, 64)).eval()
    ref_state = reference.state_dict()
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in ref_state.items()}
    model.load_state_dict(ref_state)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert list(got) == list(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name])


def test_half_width_channels_and_strides():
    model = build_backbone(_cfg("build_basic_retinanet_resnet_fpn_backbone", 32))
    bottom_up = model.bottom_up
    assert bottom_up.stem.out_channels == 32
    assert {k: (v.channels, v.stride) for k, v in bottom_up.output_shape().items()} == {
        "res3": (64, 8),
        "res4": (128, 16),
        "res5": (256, 32),
    }
    out = model(torch.randn(2, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "p3": (2, 32, 8, 12),
        "p4": (2, 32, 4, 6),
        "p5": (2, 32, 2, 3),
        "p6": (2, 32, 1, 2),
        "p7": (2, 32, 1, 1),
    }
    full = sum(p.numel() for p in build_backbone(_cfg("build_basic_resnet_backbone", 64)).parameters())
    half = sum(p.numel() for p in build_backbone(_cfg("build_basic_resnet_backbone", 32)).parameters())
    assert 0.2 < half / full < 0.3  # conv weights scale with width squared


def test_deeper_resnets_are_refused():
    with pytest.raises(ValueError, match="DEPTH 50"):
        build_backbone(_cfg("build_basic_resnet_fpn_backbone", 64, depth=50))


@pytest.mark.parametrize("grad", [False, True])
def test_cpu_pool_stem_is_basic_stem(grad):
    """The channels-last max pool (no gradient, CPU) returns exactly detectron2's stem output, contiguous; with
    gradients the plain path runs and its gradients are detectron2's."""
    from detectron2.modeling.backbone.resnet import BasicStem

    from projects.modeling.backbone import CpuPoolStem

    torch.manual_seed(0)
    plain, fast = BasicStem(3, 32, norm="GN"), CpuPoolStem(3, 32, norm="GN")
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 37, 50)  # odd sizes: the pool's padding on every border
    with torch.set_grad_enabled(grad):
        expected, got = plain(x), fast(x)
    assert torch.equal(got, expected) and got.is_contiguous()
    if grad:
        expected.square().sum().backward()
        got.square().sum().backward()
        for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
            torch.testing.assert_close(q.grad, p.grad, msg=name)
