"""Tiny RGNN-VIS configs, clips and synthetic detections shared by the RGNN-VIS tests (a helper module)."""

import os

import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances

from projects.config import add_video_config
from vis_rgnn import add_rgnn_config
from vis_rgnn.detector import YolactDetector
from vis_rgnn.losses import FrameTargets
from vis_rgnn.track_state import FrameDetections
from vis_rgnn.tracker import RGNNTracker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 64, 96


def synthetic_base_cfg():
    """The synthetic stage-1 config with 3 classes and a 16-channel FPN on detectron2's full-width R18 trunk (the
    trunk the seeded fixtures and frozen outputs were set up with, whatever the config's backbone)."""
    cfg = get_cfg()
    add_video_config(cfg)
    add_rgnn_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "vis_rgnn", "synthetic_R18_stage1.yaml"))
    cfg.MODEL.NUM_CLASSES = 3
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    cfg.MODEL.BACKBONE.NAME = "build_retinanet_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    return cfg


def build_release_model(stage: int = 2):
    """The model of ``configs/vis_rgnn/release_R50_ytvis19.yaml`` (the release's R50 runfile model) at ``stage``, on
    the CPU, without weights."""
    cfg = get_cfg()
    add_rgnn_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "vis_rgnn", "release_R50_ytvis19.yaml"))
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS, cfg.MODEL.RGNN.STAGE = "cpu", "", stage
    return build_model(cfg)


def tiny_cfg(stage: int = 1, **rgnn):
    """The synthetic config shrunk further; ``rgnn`` overrides MODEL.RGNN keys ("GNN__DIM" = GNN.DIM)."""
    cfg = synthetic_base_cfg()
    small = {"STAGE": stage, **SMALL, **rgnn}
    cfg.merge_from_list([x for k, v in small.items() for x in ("MODEL.RGNN." + k.replace("__", "."), v)])
    return cfg


def _clip(length: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images, instances = [], []
    for t in range(length):
        img = torch.randint(0, 60, (3, H, W), dtype=torch.uint8, generator=g)
        masks = torch.zeros(2, H, W, dtype=torch.bool)
        masks[0, 10 + t : 30 + t, 8:40] = True
        masks[1, 30:60, 60 - t : 90 - t] = True
        img[0][masks[0]] = 250
        img[2][masks[1]] = 250
        images.append(img), instances.append(two_object_targets(masks))
    return {
        "video_id": seed,
        "height": 2 * H,
        "width": 2 * W,
        "length": length,
        "image": images,
        "instances": instances,
    }


NUM_CLASSES, APP = 3, 8


def _tracker(**kw):
    args = dict(num_classes=NUM_CLASSES, appearance_dim=APP, dim=16, gate_hidden=8, residual_hidden=8, max_tracks=8)
    args.update(kw)
    return RGNNTracker(**args)


def _synthetic_detections(b: int, length: int, seed: int):
    """Clips of 3 linearly moving objects; per frame one noisy detection per object plus a false positive."""
    g = torch.Generator().manual_seed(seed)
    grid = (H // 4, W // 4)
    start = torch.rand(b, 3, 2, generator=g) * torch.tensor([W - 30.0, H - 24.0])
    vel = torch.randn(b, 3, 2, generator=g) * 2
    size = torch.tensor([24.0, 18.0])
    classes = torch.randint(0, NUM_CLASSES, (b, 3), generator=g)
    appearance = torch.nn.functional.normalize(torch.randn(b, 3, APP, generator=g), dim=-1)
    frames, identities, targets = [], [], []
    for t in range(length):
        m = 4
        boxes, probs, masks = torch.zeros(b, m, 4), torch.zeros(b, m, NUM_CLASSES + 1), torch.zeros(b, m, *grid)
        app, ident = torch.zeros(b, m, APP), torch.full((b, m), -1, dtype=torch.long)
        frame_targets = []
        for i in range(b):
            gt_masks = torch.zeros(3, *grid)
            perm = torch.randperm(m, generator=g)
            for k in range(m):
                j = perm[k]
                if k < 3:
                    xy = (start[i, k] + vel[i, k] * t).clamp(min=0)
                    box = torch.cat([xy, xy + size]) + torch.randn(4, generator=g)
                    logits = torch.randn(NUM_CLASSES + 1, generator=g)
                    logits[classes[i, k]] += 2.0
                    a = appearance[i, k] + 0.2 * torch.randn(APP, generator=g)
                    ident[i, j] = k + 1
                    gt_box = torch.cat([xy, xy + size]) / 4
                    gt_masks[k, int(gt_box[1]) : int(gt_box[3]), int(gt_box[0]) : int(gt_box[2])] = 1
                else:  # false positive
                    xy = torch.rand(2, generator=g) * torch.tensor([W - 20.0, H - 20.0])
                    box = torch.cat([xy, xy + 16])
                    logits = torch.randn(NUM_CLASSES + 1, generator=g)
                    a = torch.randn(APP, generator=g)
                boxes[i, j], probs[i, j], app[i, j] = box, logits.softmax(-1), torch.nn.functional.normalize(a, dim=-1)
                q = (box / 4).round().long().clamp(min=0)
                masks[i, j, q[1] : q[3], q[0] : q[2]] = 0.9
            frame_targets.append(
                FrameTargets(torch.tensor([1, 2, 3]), gt_masks, {k + 1: int(classes[i, k]) for k in range(3)})
            )
        frames.append(
            FrameDetections(
                boxes,
                probs,
                probs[..., :NUM_CLASSES].max(-1).values,
                masks,
                app,
                torch.ones(b, m, dtype=torch.bool),
                torch.tensor([[H, W]] * b, dtype=torch.float32),
            )
        )
        identities.append(ident)
        targets.append(frame_targets)
    return frames, identities, targets


def _randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model


SMALL = {
    "DETECTOR__PROTO_CHANNELS": 16,
    "DETECTOR__HEAD_CHANNELS": 16,
    "DETECTOR__NUM_PROTOTYPES": 8,
    "APPEARANCE__CHANNELS": 8,
    "APPEARANCE__HIDDEN": 4,
    "GNN__DIM": 16,
    "GNN__GATE_HIDDEN": 8,
    "GNN__RESIDUAL_HIDDEN": 8,
}


def small_cfg(config: str, **rgnn):
    """``configs/vis_rgnn/<config>`` with an R18-sized, narrow network on the CPU, 3 classes, no weights;
    ``rgnn`` overrides MODEL.RGNN keys ("GNN__DIM" = GNN.DIM)."""
    cfg = get_cfg()
    add_video_config(cfg)
    add_rgnn_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "vis_rgnn", config))
    cfg.MODEL.NUM_CLASSES = 3
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    opts = dict(SMALL, **rgnn)
    cfg.merge_from_list([x for k, v in opts.items() for x in ("MODEL.RGNN." + k.replace("__", "."), v)])
    return cfg


def tiny_release_detector(anchor_generator, num_classes: int, **overrides) -> YolactDetector:
    """A YOLACT detector in eval mode with the release's layout (anchor layout, log-probability scores, release box
    clamping) on five 8-channel levels p3..p7, 4 prototypes, 8-channel heads; ``overrides``: other arguments."""
    shapes = {f"p{i}": ShapeSpec(channels=8, stride=2**i) for i in range(3, 8)}
    args = dict(
        input_shape=shapes,
        in_features=list(shapes),
        proto_feature="p3",
        anchor_generator=anchor_generator,
        num_classes=num_classes,
        num_prototypes=4,
        proto_channels=8,
        head_channels=8,
        loss_weights={},
        anchor_layout="yolact",
        score_mode="log_prob",
        box_clamp="release",
    )
    return YolactDetector(**{**args, **overrides}).eval()


PAPER_STAGE2 = "R50_FPN_stage2_150ep_ytvis19.yaml"  # YOLACT's FPN: unpadded input


def paper_clip(h: int, w: int, length: int, seed: int):
    """Two objects as rectangles whose edges lie on multiples of 4 px; the second reaches the bottom-right
    corner of the image."""
    g = torch.Generator().manual_seed(seed)
    images, instances = [], []
    for _ in range(length):
        masks = torch.zeros(2, h, w, dtype=torch.bool)
        masks[0, 8:32, 4:40] = True
        masks[1, 36:, 48:] = True
        img = torch.randint(0, 255, (3, h, w), dtype=torch.uint8, generator=g)
        images.append(img), instances.append(two_object_targets(masks))
    return {"video_id": seed, "height": h, "width": w, "length": length, "image": images, "instances": instances}


def two_object_targets(masks: torch.Tensor) -> Instances:
    """GT ``Instances`` of the two-object clips: (2, h, w) masks, their boxes, classes 0 / 2, ids 4 / 9."""
    inst = Instances(tuple(masks.shape[-2:]))
    inst.gt_masks = BitMasks(masks)
    inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
    inst.gt_classes = torch.tensor([0, 2])
    inst.gt_ids = torch.tensor([4, 9])
    return inst
