"""RGNN-VIS model tests on tiny synthetic tensors: both training stages, the tracker's learning signal, long-run
stability of the recurrent state, and the online inference contract of docs/interfaces.md."""

import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances

from projects.config import add_video_config
from projects.utils.masks import decode_mask
from vis_rgnn import add_rgnn_config
from vis_rgnn.losses import FrameTargets, tracker_clip_losses
from vis_rgnn.track_state import FrameDetections
from vis_rgnn.tracker import RGNNTracker

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 64, 96


def tiny_cfg(stage: int = 1, **rgnn):
    """The synthetic config shrunk further; ``rgnn`` overrides MODEL.RGNN keys ("GNN__DIM" = GNN.DIM)."""
    cfg = get_cfg()
    add_video_config(cfg)
    add_rgnn_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "vis_rgnn", "synthetic_R18_stage1.yaml"))
    cfg.MODEL.NUM_CLASSES = 3
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    small = {
        "STAGE": stage,
        "DETECTOR__PROTO_CHANNELS": 16,
        "DETECTOR__HEAD_CHANNELS": 16,
        "DETECTOR__NUM_PROTOTYPES": 8,
        "APPEARANCE__CHANNELS": 8,
        "APPEARANCE__HIDDEN": 4,
        "GNN__DIM": 16,
        "GNN__GATE_HIDDEN": 8,
        "GNN__RESIDUAL_HIDDEN": 8,
    }
    small.update(rgnn)
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
        inst = Instances((H, W))
        inst.gt_masks = BitMasks(masks)
        inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
        inst.gt_classes = torch.tensor([0, 2])
        inst.gt_ids = torch.tensor([4, 9])
        images.append(img), instances.append(inst)
    return {
        "video_id": seed,
        "height": 2 * H,
        "width": 2 * W,
        "length": length,
        "image": images,
        "instances": instances,
    }


def test_num_classes_must_be_resolved():
    cfg = tiny_cfg()
    cfg.MODEL.NUM_CLASSES = -1
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        build_model(cfg)


def test_stage1_losses_and_gradients():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(stage=1)).train()
    losses = model([_clip(1, 0), _clip(1, 1)])
    assert set(losses) == {"loss_det_class", "loss_det_box", "loss_det_mask", "loss_det_semantic"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.bottom_up.stem.conv1.weight.grad is not None
    assert model.detector.protonet.post[-1].weight.grad.abs().sum() > 0


def test_stage2_freezes_segmenter_and_trains_tracker():
    cfg = tiny_cfg(stage=2, DETECTOR__SCORE_LOGIT_THRESH=-50.0, TRAIN_INIT_THRESHOLD=-50.0)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert not model.backbone.training and not model.detector.training  # frozen incl. BatchNorm statistics
    assert model.tracker.training
    losses = model([_clip(3, 0), _clip(3, 1)])
    assert set(losses) == {"loss_class", "loss_mask", "loss_match", "loss_new_track"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is None for p in model.detector.parameters())
    assert model.appearance.convs["res4"].weight.grad.abs().sum() > 0
    assert model.tracker.association_heads.match.weight.grad.abs().sum() > 0
    assert model.tracker.mask_reweighting.conv2.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"ASSOCIATION": "heuristic", "SCORING": "average", "HEURISTIC__SCORE_THRESH": 0.0},
        {"APPEARANCE__ENABLED": False, "GATING": "simple", "GNN__AGGREGATION": "scatter"},
        {"SCORING_EVIDENCE": True},
        {"SCORING": "yolact_average", "APPEARANCE__UPDATE": "constant_variance"},
    ],
)
def test_online_inference_contract(options):
    low = {"DETECTOR__SCORE_LOGIT_THRESH": -50.0, "INIT_THRESHOLD": -50.0, "INACTIVE_THRESHOLD": -50.0}
    cfg = tiny_cfg(stage=2, **low, **options)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    torch.nn.init.constant_(model.tracker.mask_reweighting.conv2.bias, 5.0)  # untrained: make masks non-empty
    video = _clip(4)
    del video["instances"]
    state = model.init_video_state()
    frame = {"image": video["image"][0], "height": 2 * H, "width": 2 * W, "frame_idx": 0}
    inst = model.step(frame, state)
    assert inst.image_size == (2 * H, 2 * W) and len(inst) > 0
    assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape[1:] == (2 * H, 2 * W)
    assert inst.pred_masks.sum(0).max() <= 1  # each pixel belongs to at most one track
    assert inst.track_ids.dtype == torch.long and inst.pred_classes.max() < 3
    (result,) = model([video])
    assert set(result) >= {"video_id", "height", "width", "length", "tracks"}
    assert result["tracks"], "low thresholds must produce tracks"
    for track in result["tracks"]:
        assert 0.0 <= track["score"] <= 1.0 and 0 <= track["category_id"] < 3
        assert len(track["segmentations"]) == 4
        rle = next(s for s in track["segmentations"] if s is not None)
        assert decode_mask(rle, 2 * H, 2 * W).shape == (2 * H, 2 * W)


# ------------------------------------------------------------------------------- tracker on synthetic tensors
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


def test_short_stage2_run_lowers_every_loss():
    """Every detection starts a track and every track keeps its best detection, so the set of tracks is the
    same at every step and the (sum-normalised, §3.5) losses are comparable across steps."""
    torch.manual_seed(0)
    tracker = _tracker(train_init_threshold=-50.0, inactive_threshold=-50.0, max_tracks=24).train()
    data = _synthetic_detections(b=2, length=5, seed=3)
    weights = {"loss_class": 1.0, "loss_mask": 1.0, "loss_match": 4.0, "loss_new_track": 1.0}
    opt = torch.optim.Adam(tracker.parameters(), lr=3e-3)
    history = []
    for _ in range(30):
        losses = tracker_clip_losses(tracker, *data, frame_decay=0.8, loss_weights=weights)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    for key in weights:
        first = sum(h[key] for h in history[:5]) / 5
        last = sum(h[key] for h in history[-5:]) / 5
        assert last < 0.75 * first, f"{key}: {first:.3f} -> {last:.3f}"


def test_recurrent_state_stays_finite_over_200_frames():
    torch.manual_seed(0)
    tracker = _tracker(init_threshold=-2.5, inactive_threshold=-3.0).eval()
    frames, _, _ = _synthetic_detections(b=1, length=200, seed=5)
    state = tracker.init_state(1, torch.device("cpu"))
    with torch.no_grad():
        for frame in frames:
            out = tracker.step(state, frame)
            assert torch.isfinite(out.class_logits).all() and torch.isfinite(out.mask_logits).all()
    for tensor in (state.h, state.c, state.app_mean, state.app_var):
        assert torch.isfinite(tensor).all()
    assert (state.app_var > 0).all()
    assert state.alive.any() and state.next_id[0] > 0
