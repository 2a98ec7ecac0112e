#!/usr/bin/env python
"""Host-device synchronisations per frame of ``RGNNVIS.step``, for ``bench_host_syncs.py``.

Counts, with ``projects.utils.host_syncs.count_host_syncs`` (torch profiler), the calls of aten::item,
_local_scalar_dense, is_nonzero, nonzero, unique* and masked_select in every step on frames 2.. of a video
(frame 1 only starts tracks). On a CUDA device it also counts the warnings of
``torch.cuda.set_sync_debug_mode("warn")``, which include the copies a CPU trace cannot see (``.cpu()``,
``.tolist()``, host-to-device ``torch.tensor``); one of them is the frame's batched output copy.

    python -m benchmarks.host_syncs_rgnn --smoke                    # tiny model, seconds on CPU
    python -m benchmarks.host_syncs_rgnn --device cuda --weights W  # R50 stage 2 at 360x640

Without ``weights`` the model is a seeded random initialisation with the detection / new-track / inactive
thresholds lowered so that every frame carries the maximum number of detections and tracks (the worst case
for per-detection syncs); with ``weights`` the config's thresholds are kept.
"""

from __future__ import annotations

import argparse
import os
from typing import Dict, Optional

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from projects.config import add_video_config
from projects.utils.host_syncs import online_step_syncs, random_video
from vis_rgnn import add_rgnn_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
__all__ = ["measure_rgnn"]


def _config(device: str, smoke: bool, weights: Optional[str], config_file: Optional[str], num_classes: int):
    cfg = get_cfg()
    add_video_config(cfg)
    add_rgnn_config(cfg)
    default = "synthetic_R18_stage2.yaml" if smoke else "R50_FPN_stage2_150ep_ytvis19.yaml"
    cfg.merge_from_file(config_file or os.path.join(ROOT, "configs", "vis_rgnn", default))
    cfg.MODEL.NUM_CLASSES = num_classes
    cfg.MODEL.DEVICE = device
    cfg.MODEL.WEIGHTS = weights or ""
    if smoke:  # shrink the synthetic config to seconds on CPU
        cfg.MODEL.FPN.OUT_CHANNELS = 16
        r = cfg.MODEL.RGNN
        r.DETECTOR.PROTO_CHANNELS = r.DETECTOR.HEAD_CHANNELS = 16
        r.DETECTOR.NUM_PROTOTYPES = 8
        r.APPEARANCE.CHANNELS, r.APPEARANCE.HIDDEN = 8, 4
        r.GNN.DIM, r.GNN.GATE_HIDDEN, r.GNN.RESIDUAL_HIDDEN = 16, 8, 8
    if not weights:
        cfg.MODEL.RGNN.DETECTOR.SCORE_LOGIT_THRESH = -50.0
        cfg.MODEL.RGNN.INIT_THRESHOLD = cfg.MODEL.RGNN.INACTIVE_THRESHOLD = -50.0
    return cfg


def measure_rgnn(
    device: str = "cpu",
    smoke: bool = True,
    frames: int = 6,
    weights: Optional[str] = None,
    config_file: Optional[str] = None,
    num_classes: int = 40,
) -> Dict[str, object]:
    """Syncs per frame of ``RGNNVIS.step`` on frames 2..``frames`` of a random video.

    Returns ``{"model", "device", "size", "frames", "syncs_per_frame" (max over the counted frames),
    "mean_syncs_per_frame", "per_op" ({op: calls per frame, mean}), "tracks" (alive after the last frame),
    "outputs" (instances returned on the last frame), "cuda_sync_warnings_per_frame" (CUDA only, else None)}``.
    """
    if frames < 2:
        raise ValueError(f"frames must be >= 2 (frame 1 is not counted), got {frames}")
    cfg = _config(device, smoke, weights, config_file, 4 if smoke else num_classes)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if weights:
        DetectionCheckpointer(model).load(weights)
    images = random_video(frames, smoke)
    state = model.init_video_state()
    syncs = online_step_syncs(model, state, images, device)
    return {
        "model": "RGNN-VIS",
        "device": device,
        "size": tuple(images[0].shape[-2:]),
        **syncs,
        "tracks": int(state["tracks"].alive.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic-size model (seconds on CPU)")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--weights", default=None, help="trained checkpoint (keeps the config's thresholds)")
    parser.add_argument("--config-file", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    r = measure_rgnn(args.device, args.smoke, args.frames, args.weights, args.config_file)
    print("| model | device | size | syncs/frame (max) | mean | per op | tracks | outputs | CUDA sync warnings/frame |")
    print("|---|---|---|---:|---:|---|---:|---:|---:|")
    ops = ", ".join(f"{k.split('::')[-1]} {v:g}" for k, v in r["per_op"].items()) or "-"
    warn = "-" if r["cuda_sync_warnings_per_frame"] is None else r["cuda_sync_warnings_per_frame"]
    print(
        f"| {r['model']} | {r['device']} | {r['size']} | {r['syncs_per_frame']} | {r['mean_syncs_per_frame']:.1f} | "
        f"{ops} | {r['tracks']} | {r['outputs']} | {warn} |"
    )


if __name__ == "__main__":
    main()
