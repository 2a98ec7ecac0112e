#!/usr/bin/env python
"""Host-device synchronisations per frame of the online step of both models.

For every ``model.step`` on frames 2.. of a video (frame 1 has no reference / track yet) it counts, with
``projects.utils.host_syncs.count_host_syncs`` (torch profiler), the calls of aten::item,
_local_scalar_dense, is_nonzero, nonzero, unique* and masked_select. On a CUDA device it also counts the
warnings of ``torch.cuda.set_sync_debug_mode("warn")``, which include what a CPU trace cannot see
(``.cpu()`` / ``.tolist()`` copies, host-to-device ``torch.tensor``); the frame's one batched output copy is
one of them. RGNN-VIS is measured by ``benchmarks/host_syncs_rgnn.py: measure_rgnn``.

    python -m benchmarks.bench_host_syncs --smoke                      # tiny models, seconds on CPU
    python -m benchmarks.bench_host_syncs --device cuda                # R50 configs at 360x640
    python -m benchmarks.bench_host_syncs MODEL.WEIGHTS out/model_final.pth   # VisSTG overrides (any key)

Without ``MODEL.WEIGHTS`` the VisSTG model is a seeded random initialisation with the score / reference
thresholds at 0 and every edge a match candidate, so that every frame carries ``INFERENCE.MAX_DETECTIONS``
detections, matches and memory instances (the per-frame work of the step does not depend on the weights:
all its shapes are fixed by the config and the input size).
"""

from __future__ import annotations

import argparse
import os
from typing import Dict, List, Optional

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from benchmarks.host_syncs_rgnn import measure_rgnn
from projects.config import add_video_config
from projects.utils.host_syncs import online_step_syncs, random_video
from vis_stg import add_vis_stg_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
__all__ = ["measure_vis_stg", "vis_stg_config"]


def vis_stg_config(device: str, smoke: bool, opts: List[str], config_file: Optional[str] = None, num_classes: int = 40):
    """The R50 YouTube-VIS config (``--smoke``: the synthetic R18 config shrunk to seconds on CPU)."""
    cfg = get_cfg()
    add_video_config(cfg)
    add_vis_stg_config(cfg)
    default = "synthetic_R18.yaml" if smoke else "R50_FPN_24ep_ytvis19.yaml"
    cfg.merge_from_file(config_file or os.path.join(ROOT, "configs", "vis_stg", default))
    cfg.MODEL.DEVICE = device
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.NUM_CLASSES = 4 if smoke else num_classes
    if smoke:
        c = cfg.MODEL.VIS_STG
        cfg.MODEL.FPN.OUT_CHANNELS, cfg.MODEL.FPN.NORM = 16, ""
        c.GRAPH.HIDDEN_DIM = c.DET.CONV_DIM = c.MASK.CONTROLLER_CONV_DIM = c.MASK.BRANCH_CONV_DIM = 16
        c.WARP.CONV_DIM, c.TRACK.CLASSIFIER_HIDDEN_DIM, c.TRACK.EMBED_DIM = 8, 16, 8
        c.INFERENCE.MAX_DETECTIONS = 8
    cfg.merge_from_list(opts)
    if not cfg.MODEL.WEIGHTS:  # random weights: make every detection / edge count (the worst case)
        c = cfg.MODEL.VIS_STG
        c.INFERENCE.SCORE_THRESH = c.TRACK.REF_SCORE_THRESH = c.TRACK.MATCH_THRESH = 0.0
        c.INFERENCE.NMS_THRESH = 0.9
    return cfg


def measure_vis_stg(
    device: str = "cpu",
    smoke: bool = True,
    frames: int = 6,
    opts: Optional[List[str]] = None,
    config_file: Optional[str] = None,
) -> Dict[str, object]:
    """Syncs per frame of ``VisSTG.step`` on frames 2..``frames`` of a random video; the same keys as
    ``measure_rgnn``: ``syncs_per_frame`` (max over the counted frames), ``mean_syncs_per_frame``,
    ``per_op`` (mean calls per frame), ``tracks`` (reference instances after the last frame), ``outputs``
    (instances of the last frame), ``cuda_sync_warnings_per_frame`` (CUDA only, else None)."""
    if frames < 2:
        raise ValueError(f"frames must be >= 2 (frame 1 is not counted), got {frames}")
    cfg = vis_stg_config(device, smoke, list(opts or []), config_file)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        with torch.no_grad():  # zero-initialised layers (graph update, warp offsets) get a seeded value too
            g = torch.Generator().manual_seed(1)
            for p in model.parameters():
                p.add_((torch.randn(p.shape, generator=g) * 0.02).to(p.device))
    images = random_video(frames, smoke)
    state = model.init_video_state()
    syncs = online_step_syncs(model, state, images, device)
    return {
        "model": "VisSTG",
        "device": device,
        "size": tuple(images[0].shape[-2:]),
        **syncs,
        "tracks": 0 if state.refs is None else len(state.refs),
    }


def print_table(rows: List[Dict[str, object]]) -> None:
    print(
        f"| {'model':<8} | {'device':<6} | {'input':<8} | {'syncs/frame (max)':>17} | {'mean':>5} | "
        f"{'CUDA sync warnings/frame':>24} | {'outputs':>7} | {'tracks':>6} | per op (mean/frame)"
    )
    print(f"|{'-' * 10}|{'-' * 8}|{'-' * 10}|{'-' * 19}|{'-' * 7}|{'-' * 26}|{'-' * 9}|{'-' * 8}|{'-' * 20}")
    for r in rows:
        cuda = r["cuda_sync_warnings_per_frame"]
        size = "x".join(map(str, r["size"]))
        per_op = ", ".join(f"{k.replace('aten::', '')} {v:g}" for k, v in r["per_op"].items()) or "-"
        print(
            f"| {r['model']:<8} | {r['device']:<6} | {size:<8} | {r['syncs_per_frame']:>17} | "
            f"{r['mean_syncs_per_frame']:>5.1f} | {'-' if cuda is None else cuda:>24} | {r['outputs']:>7} | "
            f"{r['tracks']:>6} | {per_op}"
        )


def main(argv=None) -> List[Dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny models at 64x96 (seconds on CPU)")
    parser.add_argument("--frames", type=int, default=6, help="frames per video (frames 2.. are counted)")
    parser.add_argument("--config-file", default=None, help="VisSTG config (default: R50 / synthetic for --smoke)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="VisSTG config overrides, e.g. MODEL.WEIGHTS w.pth")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    rows = [measure_vis_stg(args.device, args.smoke, args.frames, args.opts, args.config_file)]
    rows.append(measure_rgnn(device=args.device, smoke=args.smoke, frames=args.frames))
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
