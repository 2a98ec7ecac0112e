#!/usr/bin/env python
"""How well a mask predicted on a grid of stride s can fit the ground truth at all.

    python -m experiments.mask_stride_ceiling --gt GT.json [--strides 4 8] [--small 300]

Every annotated mask (every frame) is reduced to its area fraction per s×s cell (a perfect soft prediction on
that grid), bilinearly up-sampled back to the frame and thresholded at 0.5, as a model's mask logits on that grid
would be; prints the mean IoU with the original mask, overall and for masks under ``--small`` pixels. A VisSTG
or YOLACT mask head working at stride s cannot do better on average (sharper logits can place an edge within a
cell, but not resolve structure below it).
"""

from __future__ import annotations

import argparse
import json
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from projects.utils.masks import decode_mask


def grid_iou(mask: np.ndarray, stride: int) -> float:
    """IoU of a binary (H, W) mask with its stride-``stride`` area-fraction version, up-sampled and thresholded."""
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    h, w = m.shape[-2:]
    pad = (0, -w % stride, 0, -h % stride)
    coarse = F.avg_pool2d(F.pad(m, pad), stride, stride)
    up = F.interpolate(coarse, scale_factor=stride, mode="bilinear", align_corners=False)[..., :h, :w] > 0.5
    truth = m > 0.5
    union = (up | truth).sum().item()
    return (up & truth).sum().item() / union if union else 1.0


def stride_ceilings(gt: Dict, strides: Sequence[int], small: float) -> Dict[int, Dict[str, float]]:
    """{stride: {"all": mean IoU, "small": mean IoU over masks under ``small`` pixels, "count": masks}}."""
    sizes = {v["id"]: (v["height"], v["width"]) for v in gt["videos"]}
    ious: Dict[int, list] = {s: [] for s in strides}
    areas = []
    for a in gt["annotations"]:
        h, w = sizes[a["video_id"]]
        for seg in a["segmentations"]:
            if seg is None:
                continue
            mask = decode_mask(seg, h, w)
            if not mask.any():
                continue
            areas.append(float(mask.sum()))
            for s in strides:
                ious[s].append(grid_iou(mask, s))
    areas_np = np.asarray(areas)
    out = {}
    for s in strides:
        x = np.asarray(ious[s])
        out[s] = {
            "all": float(x.mean()) if len(x) else float("nan"),
            "small": float(x[areas_np < small].mean()) if (areas_np < small).any() else float("nan"),
            "count": len(x),
        }
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt", required=True, help="YouTube-VIS ground-truth JSON with annotations")
    p.add_argument("--strides", type=int, nargs="+", default=[4, 8])
    p.add_argument("--small", type=float, default=300.0, help="area (pixels) under which a mask counts as small")
    a = p.parse_args(argv)
    with open(a.gt) as f:
        gt = json.load(f)
    print(f"| stride | mean IoU | masks < {a.small:g} px | masks |\n|---:|---:|---:|---:|")
    for s, r in stride_ceilings(gt, a.strides, a.small).items():
        print(f"| {s} | {r['all']:.3f} | {r['small']:.3f} | {r['count']} |")


if __name__ == "__main__":
    main()
