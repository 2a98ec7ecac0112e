#!/usr/bin/env python
"""The stem's max pool without gradients on the CPU: detectron2's ``BasicStem`` against
``projects.modeling.backbone.CpuPoolStem`` (the same pool on a channels-last copy), and the whole synthetic
backbone's no-grad forward with each stem (what a frozen RGNN-VIS stage-2 segmenter and evaluation run).

    python -m benchmarks.bench_stem_pool [--threads 1] [--repeats 10]

Prints milliseconds per call and the ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch


def _ms(module: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Milliseconds per ``module(x)`` call (one call first, not counted)."""
    module(x)
    start = time.perf_counter()
    for _ in range(repeats):
        module(x)
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone.resnet import BasicStem

    from projects.config import add_video_config
    from projects.modeling.backbone import CpuPoolStem, build_basic_retinanet_resnet_fpn_backbone

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"torch threads: {torch.get_num_threads()}")
    for batch, (h, w) in ((20, (160, 256)), (1, (480, 864))):
        x = torch.randn(batch, 3, h, w)
        plain, fast = BasicStem(3, 32, norm="GN").eval(), CpuPoolStem(3, 32, norm="GN").eval()
        fast.load_state_dict(plain.state_dict())
        with torch.no_grad():
            assert torch.equal(plain(x), fast(x))
            t_plain, t_fast = _ms(plain, x, a.repeats), _ms(fast, x, a.repeats)
        ratio = t_fast / t_plain
        print(f"stem, {batch} x {h}x{w}: BasicStem {t_plain:.1f} ms, CpuPoolStem {t_fast:.1f} ms (x{ratio:.2f})")

    cfg = get_cfg()
    add_video_config(cfg)
    cfg.merge_from_list(
        ["MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.STEM_OUT_CHANNELS", 32, "MODEL.RESNETS.RES2_OUT_CHANNELS", 32]
        + ["MODEL.RESNETS.OUT_FEATURES", ["res3", "res4", "res5"], "MODEL.FPN.IN_FEATURES", ["res3", "res4", "res5"]]
        + ["MODEL.FPN.OUT_CHANNELS", 64]
    )
    backbone = build_basic_retinanet_resnet_fpn_backbone(cfg, ShapeSpec(channels=3)).eval()
    x = torch.randn(20, 3, 160, 256)
    with torch.no_grad():
        t_fast = _ms(backbone, x, a.repeats)
        fast_stem = backbone.bottom_up.stem
        backbone.bottom_up.stem = BasicStem(3, 32, norm=cfg.MODEL.RESNETS.NORM)
        backbone.bottom_up.stem.load_state_dict(fast_stem.state_dict())
        t_plain = _ms(backbone, x, a.repeats)
    print(
        f"synthetic R18-FPN (half width) forward, 20 x 160x256, no grad: BasicStem {t_plain:.1f} ms, "
        f"CpuPoolStem {t_fast:.1f} ms (x{t_fast / t_plain:.2f})"
    )


if __name__ == "__main__":
    main()
