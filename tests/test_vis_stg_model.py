"""VisSTG meta-architecture on tiny tensors: training losses and gradients, online ``step()``, video results,
ablation switches, shipped configs, and a short training run that lowers every loss."""

import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances

from projects.config import add_video_config
from vis_stg import VisSTG, add_vis_stg_config
from vis_stg.state import VideoState

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 64, 96
COLORS = torch.tensor([[250, 40, 40], [40, 250, 40], [40, 40, 250]], dtype=torch.uint8)


def tiny_cfg(**vis_stg):
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
    for key, value in vis_stg.items():  # "GRAPH.NUM_ITERS": 1 -> cfg.MODEL.VIS_STG.GRAPH.NUM_ITERS = 1
        *parents, leaf = key.split(".")
        node = c
        for name in parents:
            node = node[name]
        node[leaf] = value
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


def run_moving_box_video(model, frames=3):
    """``model.step`` (in eval mode) over a box moving right by 4 px per frame; the per-frame outputs."""
    model.eval()
    state = model.init_video_state()
    outs = []
    for t in range(frames):
        image, _ = _frame([(1, 0, 8 + 4 * t, 8, 28 + 4 * t, 30)])
        outs.append(model.step({"image": image, "height": H, "width": W, "frame_idx": t}, state))
    return outs


def test_num_classes_must_be_resolved():
    cfg = tiny_cfg()
    cfg.MODEL.NUM_CLASSES = -1
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        VisSTG(cfg)


@pytest.mark.parametrize(
    "name,strides", [("R50_FPN_24ep_ytvis19.yaml", [8, 16, 32, 64, 128]), ("synthetic_R18.yaml", [8, 16, 32])]
)
def test_shipped_configs_build(name, strides):
    cfg = get_cfg()
    add_video_config(cfg)
    add_vis_stg_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "vis_stg", name))
    cfg.MODEL.DEVICE, cfg.MODEL.NUM_CLASSES = "cpu", 40
    model = build_model(cfg)
    assert isinstance(model, VisSTG) and model.strides == strides
    assert model.mask_head.num_params == 169


def test_training_losses_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    model.train()
    losses = model(_batch())
    assert set(losses) == {
        "loss_center",
        "loss_size",
        "loss_offset",
        "loss_mask",
        "loss_mask_warp",
        "loss_mask_ref",
        "loss_edge",
    }
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


@pytest.mark.parametrize(
    "overrides,expected_keys",
    [
        ({"TRACK.ASSOCIATION": "embedding"}, {"loss_embed"}),
        ({"GRAPH.FUSION": False, "WARP.ENABLED": False}, {"loss_edge"}),
        (
            {"GRAPH.NUM_ITERS": 1, "DET.REF_FRAME_LOSS": True, "MASK.POS_RADIUS": 1},
            {"loss_edge", "loss_center_ref", "loss_size_ref", "loss_offset_ref"},
        ),
    ],
)
def test_ablation_variants_train_and_run_online(overrides, expected_keys):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(**overrides))
    model.train()
    losses = model(_batch())
    assert expected_keys <= set(losses)
    sum(losses.values()).backward()
    for out in run_moving_box_video(model):
        assert out.pred_masks.shape[1:] == (H, W)


def test_step_returns_documented_instances_and_keeps_state():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(**{"INFERENCE.MAX_DETECTIONS": 5})).eval()
    state = model.init_video_state()
    assert isinstance(state, VideoState)
    seen_ids = set()
    for t in range(4):
        image = torch.randint(0, 255, (3, H, W), dtype=torch.uint8)
        out = model.step({"image": image, "height": 2 * H, "width": 3 * W, "frame_idx": t}, state)
        assert out.image_size == (2 * H, 3 * W)
        assert out.track_ids.dtype == torch.int64 and out.pred_classes.dtype == torch.int64
        assert out.scores.dtype == torch.float32 and out.pred_masks.dtype == torch.bool
        assert out.pred_masks.shape == (len(out), 2 * H, 3 * W) and len(out) <= 5
        assert ((out.pred_classes >= 0) & (out.pred_classes < 3)).all()
        assert len(set(out.track_ids.tolist())) == len(out)  # unique within a frame
        seen_ids |= set(out.track_ids.tolist())
        assert state.refs is not None and state.prev_thetas is not None
    # An input of another size resets the frame context (no graph against an incompatible frame).
    out = model.step(
        {"image": torch.zeros(3, H + 32, W, dtype=torch.uint8), "height": H, "width": W, "frame_idx": 4}, state
    )
    assert set(out.track_ids.tolist()).isdisjoint(seen_ids)


def test_eval_forward_returns_video_results():
    torch.manual_seed(0)
    model = build_model(tiny_cfg()).eval()
    video = {
        "video_id": 3,
        "height": H,
        "width": W,
        "length": 3,
        "image": [_frame([(1, 0, 8 + 4 * t, 8, 28 + 4 * t, 30)])[0] for t in range(3)],
    }
    (result,) = model([video])
    assert {k: result[k] for k in ("video_id", "height", "width", "length")} == {
        "video_id": 3,
        "height": H,
        "width": W,
        "length": 3,
    }
    for track in result["tracks"]:
        assert set(track) == {"track_id", "score", "category_id", "segmentations"}
        assert len(track["segmentations"]) == 3 and 0 <= track["category_id"] < 3


def test_short_training_run_lowers_every_loss():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(**{"MASK.POS_RADIUS": 1}))
    model.train()
    batch = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(40):
        losses = model(batch)
        history.append({k: v.item() for k, v in losses.items()})
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    for key in history[0]:
        start = sum(h[key] for h in history[:3]) / 3
        end = sum(h[key] for h in history[-3:]) / 3
        assert end < start, f"{key} did not decrease: {start:.4f} -> {end:.4f}"


def test_joint_embedding_trains_both_heads_without_touching_the_shared_network():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(**{"TRACK.JOINT_EMBEDDING": True}))
    model.train()
    losses = model(_batch())
    assert {"loss_edge", "loss_embed"} <= set(losses)
    losses["loss_embed"].backward()
    with_grad = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {"embed_head"}  # detached: only the embedding head learns from its loss
    # Both associations then run from the same weights (eval-time switch).
    for association in ("edge", "embedding"):
        other = build_model(tiny_cfg(**{"TRACK.JOINT_EMBEDDING": True, "TRACK.ASSOCIATION": association}))
        other.load_state_dict(model.state_dict())
        other.eval()
        state = other.init_video_state()
        for t in range(2):
            image, _ = _frame([(1, 0, 8 + 4 * t, 8, 28 + 4 * t, 30)])
            other.step({"image": image, "height": H, "width": W, "frame_idx": t}, state)


@pytest.mark.parametrize("baseline", ["per_frame", "iou"])
def test_trivial_baselines(baseline):
    torch.manual_seed(0)
    model = build_model(
        tiny_cfg(
            **{
                "INFERENCE.BASELINE": baseline,
                "INFERENCE.SCORE_THRESH": 0.0,
                "INFERENCE.NMS_THRESH": 0.0,
                "INFERENCE.MAX_DETECTIONS": 4,
            }
        )
    ).eval()
    with torch.no_grad():
        model.det_head.size[-1].bias.fill_(3.0)  # non-degenerate boxes (random weights predict size ~0)
    state = model.init_video_state()
    image, _ = _frame([(1, 0, 8, 8, 28, 30)])
    ids = []
    for t in range(3):  # the same frame three times: same detections, boxes IoU 1
        out = model.step({"image": image, "height": H, "width": W, "frame_idx": t}, state)
        assert len(out) == 4 and out.pred_masks.shape == (4, H, W)
        ids.append(out.track_ids.tolist())
    assert state.prev_thetas is None  # no kernel warp
    if baseline == "per_frame":
        assert len(set(sum(ids, []))) == 12
    else:
        assert ids[0] == ids[1] == ids[2]


def test_coverage_video_score():
    from projects.modeling.online import VideoTrack

    model = build_model(tiny_cfg(**{"TRACK.VIDEO_SCORE": "coverage"})).eval()
    state = VideoState(num_frames=4)
    tracks = {
        0: VideoTrack(0, frame_scores=[0.8, 0.6], frame_classes=[1, 1]),
        1: VideoTrack(1, frame_scores=[0.4] * 4, frame_classes=[2] * 4),
    }
    for track in tracks.values():
        track.default_score_and_class()
    model.finalize_video(state, tracks)
    assert tracks[0].score == pytest.approx(0.35) and tracks[1].score == pytest.approx(0.4)
    assert tracks[0].category_id == 1
