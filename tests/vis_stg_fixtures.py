"""Tiny VisSTG configs and hand-made frames shared by the VisSTG tests (a helper module, not a test)."""

import os

import torch
from detectron2.config import get_cfg
from detectron2.structures import BitMasks, Boxes, Instances

from projects.config import add_video_config
from vis_stg import add_vis_stg_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 64, 96
COLORS = torch.tensor([[250, 40, 40], [40, 250, 40], [40, 40, 250]], dtype=torch.uint8)


def tiny_cfg(**vis_stg):
    """A tiny R18 VisSTG config; ``vis_stg`` overrides MODEL.VIS_STG keys ("GRAPH.NUM_ITERS": 1)."""
    cfg = get_cfg()
    add_video_config(cfg)
    add_vis_stg_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "VisSTG"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.NUM_CLASSES = 3
    cfg.MODEL.PIXEL_STD = [57.0, 57.0, 57.0]
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "GN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    c = cfg.MODEL.VIS_STG
    c.IN_FEATURES, c.SIZES_OF_INTEREST, c.SIZE_DIVISIBILITY = ["p3", "p4", "p5"], [32, 64], 32
    c.GRAPH.WINDOW_SIZES, c.GRAPH.HIDDEN_DIM, c.GRAPH.POOLER_RESOLUTION = [5, 3, 3], 16, 3
    c.DET.CONV_DIM, c.MASK.CONTROLLER_CONV_DIM, c.MASK.BRANCH_CONV_DIM, c.WARP.CONV_DIM = 16, 16, 16, 8
    c.TRACK.CLASSIFIER_HIDDEN_DIM, c.TRACK.EMBED_DIM = 16, 8
    cfg.merge_from_list([x for key, value in vis_stg.items() for x in ("MODEL.VIS_STG." + key, value)])
    return cfg


def _frame(objects):
    """objects: list of (track id, class, x0, y0, x1, y1) -> uint8 BGR image and Instances."""
    g = torch.Generator().manual_seed(len(objects))
    image = torch.randint(90, 110, (3, H, W), dtype=torch.uint8, generator=g)
    inst = Instances((H, W))
    masks = torch.zeros(len(objects), H, W, dtype=torch.bool)
    for i, (_, cls, x0, y0, x1, y1) in enumerate(objects):
        masks[i, y0:y1, x0:x1] = True
        image[:, y0:y1, x0:x1] = COLORS[cls].view(3, 1, 1)
    inst.gt_boxes = Boxes(torch.tensor([o[2:] for o in objects], dtype=torch.float32).view(-1, 4))
    inst.gt_classes = torch.tensor([o[1] for o in objects], dtype=torch.long)
    inst.gt_ids = torch.tensor([o[0] for o in objects], dtype=torch.long)
    inst.gt_masks = BitMasks(masks)
    return image, inst


def _pair(ref_objects, tgt_objects):
    (img_k, inst_k), (img_t, inst_t) = _frame(ref_objects), _frame(tgt_objects)
    return {"image": [img_k, img_t], "instances": [inst_k, inst_t], "height": H, "width": W}


def _batch():
    return [
        _pair([(1, 0, 8, 8, 28, 30), (2, 1, 50, 20, 74, 50)], [(1, 0, 12, 10, 32, 32), (2, 1, 48, 22, 72, 52)]),
        _pair([(3, 2, 30, 30, 56, 60), (4, 0, 70, 4, 90, 24)], [(3, 2, 34, 28, 60, 58), (5, 1, 4, 40, 24, 60)]),
    ]


def moving_box_video(frames=3, video_id=3):
    """A test-mapper video dict of a box moving right by 4 px per frame."""
    images = [_frame([(1, 0, 8 + 4 * t, 8, 28 + 4 * t, 30)])[0] for t in range(frames)]
    return {"video_id": video_id, "height": H, "width": W, "length": frames, "image": images}


def run_moving_box_video(model, frames=3):
    """``model.step`` (in eval mode) over :func:`moving_box_video`; the per-frame outputs."""
    model.eval()
    state = model.init_video_state()
    return [
        model.step({"image": image, "height": H, "width": W, "frame_idx": t}, state)
        for t, image in enumerate(moving_box_video(frames)["image"])
    ]
