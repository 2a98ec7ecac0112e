"""The fixed RGNN-VIS model variants and synthetic video of the frozen step outputs
(``tests/test_rgnn_step_regression.py``), also used by the host-sync and padded-detection tests."""

import os

import numpy as np
import torch
from detectron2.modeling import build_model

from projects.utils.host_syncs import count_host_syncs
from tests.rgnn_fixtures import synthetic_base_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W, OUT_H, OUT_W, FRAMES = 64, 96, 80, 120, 8
# Thresholds of the seeded model's logits (new-track logits about -8 to -6 before any track exists, match logits
# about -1.6): gnn_learned starts 10 new tracks at frame 2 of which 4 find no free slot, and 2-4 of the 6 tracks are
# inactive on frames 4-7; every decision is at least 0.003 from its threshold.
VARIANTS = {
    "gnn_learned": {"STAGE": 2, "INIT_THRESHOLD": -6.5, "TRAIN_INIT_THRESHOLD": -6.5, "INACTIVE_THRESHOLD": -1.64},
    "heuristic_average": {
        "STAGE": 2,
        "ASSOCIATION": "heuristic",
        "SCORING": "average",
        "HEURISTIC__SCORE_THRESH": 0.0034,
        "HEURISTIC__CLASS_WEIGHT": 0.0,
        "HEURISTIC__IOU_WEIGHT": 0.0,
        "HEURISTIC__SCORE_WEIGHT": 0.0,
    },
    "stage1": {"STAGE": 1, "HEURISTIC__SCORE_THRESH": 0.0034},
}


def build(variant: str):
    cfg = synthetic_base_cfg()
    opts = {
        "DETECTOR__PROTO_CHANNELS": 16,
        "DETECTOR__HEAD_CHANNELS": 16,
        "DETECTOR__NUM_PROTOTYPES": 8,
        "DETECTOR__SCORE_LOGIT_THRESH": -5.75,  # keeps part of the anchors of the seeded detector
        "DETECTOR__PRE_NMS_TOPK": 40,
        "DETECTOR__NMS_THRESH": 0.5,
        "DETECTOR__MAX_DETECTIONS": 10,
        "APPEARANCE__CHANNELS": 8,
        "APPEARANCE__HIDDEN": 4,
        "GNN__DIM": 16,
        "GNN__GATE_HIDDEN": 8,
        "GNN__RESIDUAL_HIDDEN": 8,
        "MAX_TRACKS": 6,  # fewer slots than detections: new tracks that find no free slot are dropped
        "INIT_THRESHOLD": 0.0,
        "INACTIVE_THRESHOLD": 0.0,
        "SCORING_EVIDENCE": True,
    }
    opts.update(VARIANTS[variant])
    cfg.merge_from_list([x for k, v in opts.items() for x in ("MODEL.RGNN." + k.replace("__", "."), v)])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    g = torch.Generator().manual_seed(1)
    tr = model.tracker
    with torch.no_grad():
        for layer in (tr.association_heads.match, tr.association_heads.new_track):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 6.0)
            layer.bias.fill_(0.5)
        tr.association_heads.new_track.bias.fill_(2.7)
        tr.association_heads.match.weight.div_(6.0)
        tr.scoring.cls.weight.copy_(torch.randn(tr.scoring.cls.weight.shape, generator=g) * 0.5)
        conv2 = tr.mask_reweighting.conv2
        conv2.weight.copy_(torch.randn(conv2.weight.shape, generator=g) * 0.2)
        conv2.bias.fill_(1.0)
        model.detector.head.box.weight.mul_(20.0)  # spread the boxes: NMS keeps some, drops others
    return model


def video():
    g = torch.Generator().manual_seed(7)
    images = []
    for t in range(FRAMES):
        img = torch.randint(0, 60, (3, H, W), dtype=torch.uint8, generator=g)
        img[0, 8 + 2 * t : 30 + 2 * t, 8:40] = 250
        img[2, 30:60, 56 - 3 * t : 90 - 3 * t] = 250
        images.append(img)
    return {"video_id": 0, "height": OUT_H, "width": OUT_W, "length": FRAMES, "image": images}


def step_host_syncs(model, v, frames: int = 4):
    """``model.step`` over the first ``frames`` frames of ``v``: the host syncs of each frame after the first
    (``projects.utils.host_syncs``) and the number of instances output in all."""
    state = model.init_video_state()
    counts, outputs = [], 0
    for t, image in enumerate(v["image"][:frames]):
        frame = {"image": image, "height": OUT_H, "width": OUT_W, "frame_idx": t}
        inst, ops = count_host_syncs(lambda frame=frame: model.step(frame, state))
        outputs += len(inst)
        if t > 0:
            counts.append(sum(ops.values()))
    return counts, outputs


def record_outputs(model, v, height: int, width: int):
    """Per-frame outputs (numpy, CPU) of ``model.step`` over video ``v`` at output size (height, width), then the
    video-level tracks of ``model([v])``: what the frozen-output tests compare."""
    state = model.init_video_state()
    frames = []
    with torch.no_grad():
        for t, image in enumerate(v["image"]):
            inst = model.step({"image": image, "height": height, "width": width, "frame_idx": t}, state).to("cpu")
            frames.append(
                {
                    "ids": inst.track_ids.numpy().copy(),
                    "classes": inst.pred_classes.numpy().copy(),
                    "scores": inst.scores.float().numpy().copy(),
                    "masks": np.packbits(inst.pred_masks.numpy(), axis=-1),
                }
            )
        (result,) = model([v])
    tracks = [(t["score"], t["category_id"], sum(s is not None for s in t["segmentations"])) for t in result["tracks"]]
    return {"frames": frames, "tracks": tracks}
