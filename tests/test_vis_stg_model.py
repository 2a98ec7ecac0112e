"""VisSTG meta-architecture on tiny tensors: training losses and gradients, online ``step()``, video results,
ablation switches, shipped configs, and a short training run that lowers every loss."""

import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from projects.config import add_video_config
from tests.vis_stg_fixtures import ROOT, H, W, _batch, _frame, moving_box_video, run_moving_box_video, tiny_cfg
from vis_stg import VisSTG, add_vis_stg_config
from vis_stg.state import VideoState

torch.set_num_threads(1)


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
    video = moving_box_video()
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


def test_mask_branch_on_a_finer_level():
    """MASK.IN_FEATURE p2: F̂ upsampled onto P2 feeds the mask branch; masks come at stride 4, training reaches
    the new lateral path and the online step returns full-size masks; a level that is not finer is refused."""
    cfg = tiny_cfg(**{"MASK.IN_FEATURE": "p2"})
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.mask_head.feat_stride == 4
    model.train()
    losses = model(_batch())
    sum(losses.values()).backward()
    assert model.backbone.fpn_output2.weight.grad.abs().sum() > 0  # P2 is trained through the mask loss
    model.eval()
    feats, fine = model.extract_features(torch.zeros(1, 3, H, W))
    assert fine.shape[-2:] == (H // 4, W // 4) and model.mask_branch(feats[0], fine).shape[-2:] == (H // 4, W // 4)
    for out in run_moving_box_video(model):
        assert out.pred_masks.shape[1:] == (H, W)
    cfg.MODEL.VIS_STG.MASK.IN_FEATURE = "p4"
    with pytest.raises(ValueError, match="MASK.IN_FEATURE"):
        build_model(cfg)


def test_mask_detail_from_a_bottom_up_level():
    """MASK.DETAIL_FEATURE res2: the branch runs at P3 and its output, upsampled to res2's stride, gets a 3x3 conv
    of res2 added (read in the same backbone pass); masks come at stride 4, the mask loss trains the new conv and
    the stem, the online step returns full-size masks; a level that is not a finer bottom-up output is refused."""
    cfg = tiny_cfg(**{"MASK.DETAIL_FEATURE": "res2"})
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.mask_head.feat_stride == 4 and "p2" not in model.backbone.output_shape()
    model.train()
    losses = model(_batch())
    losses["loss_mask"].backward()
    assert model.mask_branch.detail.weight.grad.abs().sum() > 0
    model.eval()
    feats, fine = model.extract_features(torch.zeros(1, 3, H, W))
    assert fine.shape[1:] == (model.backbone.bottom_up.output_shape()["res2"].channels, H // 4, W // 4)
    assert model.mask_branch(feats[0], fine).shape[1:] == (cfg.MODEL.VIS_STG.MASK.BRANCH_CHANNELS, H // 4, W // 4)
    for out in run_moving_box_video(model):
        assert out.pred_masks.shape[1:] == (H, W)
    for bad, extra in (("res3", ""), ("res4", ""), ("res2", "p2"), ("res9", "")):
        cfg.MODEL.VIS_STG.MASK.DETAIL_FEATURE, cfg.MODEL.VIS_STG.MASK.IN_FEATURE = bad, extra
        with pytest.raises(ValueError, match="MASK.DETAIL_FEATURE"):
            build_model(cfg)
