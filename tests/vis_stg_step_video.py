"""A fixed synthetic video and fixed seeded VisSTG weights for the frozen-output test of ``VisSTG.step``.

``python -m tests.vis_stg_step_video`` (from the repository root) (re)writes ``tests/data/vis_stg_step_reference.pt``:
the per-frame outputs (track ids, scores, classes, boxes, masks) of every variant below. The committed file was
written by the implementation before the sync-free rewrite of the per-frame step (commit message says which), so
the test checks that the rewrite did not change the outputs.
"""

from __future__ import annotations

import os
from typing import Dict, List

import numpy as np
import torch
from detectron2.modeling import build_model

from tests.vis_stg_fixtures import COLORS, tiny_cfg

REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "vis_stg_step_reference.pt")
H, W, NUM_FRAMES = 64, 96, 8

# Low thresholds so that many detections, matches and memory instances exist with seeded random weights.
COMMON = {
    "INFERENCE.SCORE_THRESH": 0.12,
    "INFERENCE.MAX_DETECTIONS": 12,
    "INFERENCE.TOPK_CANDIDATES": 40,
    "TRACK.MATCH_THRESH": 0.45,
    "TRACK.REF_SCORE_THRESH": 0.1,
    "TRACK.MEMORY_FRAMES": 2,
}
VARIANTS: Dict[str, Dict] = {
    "edge": {},
    "edge_grid_sample_no_nms": {"WARP.IMPL": "grid_sample", "INFERENCE.NMS_THRESH": 0.0},
    "embedding": {"TRACK.ASSOCIATION": "embedding", "GRAPH.FUSION": False},
    "iou_baseline": {"INFERENCE.BASELINE": "iou", "INFERENCE.BASELINE_IOU": 0.3},
}


def build_seeded_model(variant: str):
    """Tiny VisSTG with every parameter seeded (zero-initialised layers perturbed so every path matters)."""
    torch.manual_seed(0)
    model = build_model(tiny_cfg(**{**COMMON, **VARIANTS[variant]})).eval()
    g = torch.Generator().manual_seed(1)
    # An unused graph is not kept (GRAPH.FUSION False + embedding association): draw its noise anyway, after the
    # backbone's as when it was a module, so every other parameter gets the noise the frozen outputs were made with.
    dropped = []
    if model.graph is None:
        full = build_model(tiny_cfg(**{**COMMON, **VARIANTS[variant], "GRAPH.FUSION": True}))
        dropped = [p.shape for p in full.graph.parameters()]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if dropped and not name.startswith("backbone."):
                for shape in dropped:
                    torch.randn(shape, generator=g)
                dropped = []
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        model.det_head.size[-1].bias.fill_(2.0)  # boxes of a few cells
    return model


def video_frames() -> List[torch.Tensor]:
    """Three coloured rectangles moving over a noisy background (uint8 (3, H, W) per frame)."""
    g = torch.Generator().manual_seed(7)
    frames = []
    for t in range(NUM_FRAMES):
        image = torch.randint(80, 120, (3, H, W), dtype=torch.uint8, generator=g)
        for k, (x0, y0, w, h, vx) in enumerate([(6, 8, 20, 18, 3), (50, 30, 26, 24, -2), (30, 4, 14, 12, 1)]):
            x = max(0, min(W - w, x0 + vx * t))
            image[:, y0 : y0 + h, x : x + w] = COLORS[k].view(3, 1, 1)
        frames.append(image)
    return frames


def run_video(model) -> List[Dict[str, torch.Tensor]]:
    state = model.init_video_state()
    out = []
    for t, image in enumerate(video_frames()):
        inst = model.step({"image": image, "height": H, "width": W, "frame_idx": t}, state)
        out.append(
            {
                "track_ids": inst.track_ids.cpu(),
                "scores": inst.scores.cpu(),
                "classes": inst.pred_classes.cpu(),
                "boxes": inst.pred_boxes.tensor.cpu(),
                "masks": inst.pred_masks.cpu(),
            }
        )
    return out


def pack_masks(frames: List[Dict[str, torch.Tensor]]) -> List[Dict[str, torch.Tensor]]:
    """Bit-pack the bool masks (8x smaller fixture); :func:`unpack_masks` inverts it."""
    return [
        {
            **f,
            "masks": torch.from_numpy(np.packbits(f["masks"].numpy(), axis=-1)),
            "mask_shape": torch.tensor(f["masks"].shape),
        }
        for f in frames
    ]


def unpack_masks(frames: List[Dict[str, torch.Tensor]]) -> List[Dict[str, torch.Tensor]]:
    out = []
    for f in frames:
        shape = f["mask_shape"].tolist()
        bits = np.unpackbits(f["masks"].numpy(), axis=-1, count=shape[-1]).astype(bool)
        out.append({**f, "masks": torch.from_numpy(bits.reshape(shape))})
    return out


def main() -> None:
    torch.set_num_threads(1)
    reference = {name: pack_masks(run_video(build_seeded_model(name))) for name in VARIANTS}
    os.makedirs(os.path.dirname(REFERENCE), exist_ok=True)
    torch.save(reference, REFERENCE)
    for name, frames in reference.items():
        print(name, [f["track_ids"].tolist() for f in frames])


if __name__ == "__main__":
    main()
