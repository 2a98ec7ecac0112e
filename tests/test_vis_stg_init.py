"""VisSTG initialisation from COCO detectors: detectron2's RetinaNet R50-FPN zoo layout and AdelaiDet CondInst."""

import logging
import os
import pickle

import numpy as np
import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.modeling.backbone import FPN, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7

from projects.config import add_video_config
from projects.engine.checkpoint import FaultTolerantCheckpointer, summarize_loaded
from vis_stg import add_vis_stg_config
from vis_stg.convert_condinst import main as convert_main

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RETINANET_URL = "detectron2://COCO-Detection/retinanet_R_50_FPN_3x/190397829/model_final_5bd44e.pkl"


def paper_cfg(**vis_stg):
    cfg = get_cfg()
    add_video_config(cfg)
    add_vis_stg_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "vis_stg", "R50_FPN_24ep_ytvis19.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.NUM_CLASSES = 40
    for key, value in vis_stg.items():
        cfg.merge_from_list([f"MODEL.VIS_STG.{key}", value])
    return cfg


def backbone_keys(model):
    return [k for k in model.state_dict() if k.startswith("backbone.")]


def load(model, path, caplog):
    with caplog.at_level(logging.INFO, logger="projects.engine.checkpoint"):
        FaultTolerantCheckpointer(model).load(str(path))  # the trainer's checkpointer logs the summary
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("VisSTG initialisation")]
    assert len(lines) == 1
    return lines[0]


@pytest.fixture(scope="module")
def retinanet_zoo_pkl(tmp_path_factory):
    """detectron2's own RetinaNet R50-FPN 3x (model-zoo config), saved as its model-zoo .pkl files are."""
    cfg = model_zoo.get_config("COCO-Detection/retinanet_R_50_FPN_3x.yaml")
    cfg.MODEL.DEVICE = "cpu"
    retinanet = build_model(cfg)
    state = {k: v.numpy().copy() for k, v in retinanet.state_dict().items()}
    path = tmp_path_factory.mktemp("zoo") / "model_final_5bd44e.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "Detectron2 Model Zoo"}, f)
    return path, state


def test_paper_config_points_at_the_zoo_retinanet():
    cfg = paper_cfg()
    assert cfg.MODEL.WEIGHTS == RETINANET_URL
    assert model_zoo.get_checkpoint_url("COCO-Detection/retinanet_R_50_FPN_3x.yaml").endswith(
        RETINANET_URL.split("COCO-Detection/", 1)[1]
    )
    assert cfg.MODEL.VIS_STG.P6_P7_FROM == "res5"


def test_retinanet_zoo_checkpoint_loads_every_backbone_tensor(retinanet_zoo_pkl, caplog):
    path, state = retinanet_zoo_pkl
    model = build_model(paper_cfg())
    line = load(model, path, caplog)
    loaded = model.state_dict()
    keys = backbone_keys(model)
    assert not [k for k in keys if k not in state]  # zero missing backbone/FPN keys, names and shapes equal
    for k in keys:
        assert np.array_equal(loaded[k].numpy(), state[k]), k
    n_resnet = sum(k.startswith("backbone.bottom_up.") for k in keys)
    assert f"ResNet {n_resnet}/{n_resnet}" in line and "FPN 12/12" in line and "P6/P7 4/4" in line
    assert "random (not in the checkpoint or of another shape): " in line and "det_head (" in line
    assert "backbone" not in line.split("random", 1)[1] and "ResNet" not in line.split("random", 1)[1]
    assert "checkpoint tensors not used by VisSTG" in line  # RetinaNet's head


def test_p6_from_p5_option(retinanet_zoo_pkl, caplog):
    path, _ = retinanet_zoo_pkl
    model = build_model(paper_cfg(P6_P7_FROM="p5"))
    assert model.backbone.top_block.in_feature == "p5"
    assert model.backbone.top_block.p6.weight.shape == (256, 256, 3, 3)
    line = load(model, path, caplog)  # RetinaNet's P6 reads C5 (2048 channels): its weight does not fit
    assert "P6/P7 3/4" in line and "P6/P7 (1)" in line  # p6.weight random; p6.bias and P7 fit
    assert not torch.equal(model.backbone.top_block.p6.weight[:, :1], torch.zeros(256, 1, 3, 3))
    with pytest.raises(ValueError, match="P6_P7_FROM must be one of"):
        build_model(paper_cfg(P6_P7_FROM="c4"))


def _fake_condinst_state():
    """A CondInst R50 COCO state dict in AdelaiDet's layout (module attribute names and shapes)."""
    cfg = get_cfg()
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    bottom_up = build_resnet_backbone(cfg, __import__("detectron2").layers.ShapeSpec(channels=3))
    fpn = FPN(bottom_up, ["res3", "res4", "res5"], 256, top_block=LastLevelP6P7(256, 256, in_feature="p5"))
    state = {f"backbone.{k}": v.clone() for k, v in fpn.state_dict().items()}
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g)

    for tower in ("cls_tower", "bbox_tower"):
        for i in range(4):
            state[f"proposal_generator.fcos_head.{tower}.{3 * i}.weight"] = rand(256, 256, 3, 3)
            state[f"proposal_generator.fcos_head.{tower}.{3 * i}.bias"] = rand(256)
    state["proposal_generator.fcos_head.cls_logits.weight"] = rand(80, 256, 3, 3)
    state["proposal_generator.fcos_head.ctrness.weight"] = rand(1, 256, 3, 3)
    for i in range(5):
        state[f"proposal_generator.fcos_head.scales.{i}.scale"] = rand(1)
    for level in range(3):
        state[f"mask_branch.refine.{level}.0.weight"] = rand(128, 256, 3, 3)
        for bn in ("weight", "bias", "running_mean", "running_var"):
            state[f"mask_branch.refine.{level}.1.{bn}"] = rand(128)
    for i in range(4):
        state[f"mask_branch.tower.{i}.0.weight"] = rand(128, 128, 3, 3)
    state["mask_branch.tower.4.weight"], state["mask_branch.tower.4.bias"] = rand(8, 128, 1, 1), rand(8)
    state["controller.weight"], state["controller.bias"] = rand(169, 256, 3, 3), rand(169)
    return state


def test_condinst_checkpoint_converts_and_loads(tmp_path, caplog, capsys):
    state = _fake_condinst_state()
    pth, pkl = tmp_path / "CondInst_MS_R_50_3x.pth", tmp_path / "condinst_r50.pkl"
    torch.save({"model": state, "iteration": 89999}, pth)
    assert convert_main([str(pth), str(pkl), "--mask-branch-convs", "1"]) == 0
    assert "dropped" in capsys.readouterr().out
    # the VisSTG config CondInst fits: P6 from P5, one 3x3 conv of 128 channels before the 1x1 mask conv
    model = build_model(paper_cfg(P6_P7_FROM="p5", **{"MASK.BRANCH_NUM_CONVS": 1, "MASK.BRANCH_CONV_DIM": 128}))
    line = load(model, pkl, caplog)
    loaded = model.state_dict()
    keys = backbone_keys(model)
    assert not [k for k in keys if k not in state]
    for k in keys:
        assert torch.equal(loaded[k], state[k]), k
    assert torch.equal(loaded["mask_branch.layers.2.weight"], state["mask_branch.tower.4.weight"])
    assert "P6/P7 4/4" in line and "FPN 12/12" in line and "mask_branch 2/4" in line
    # CondInst's controller is one 3x3 conv, VisSTG's ends with a 1x1: not converted, all of it stays random
    assert "controller (4)" in line and "controller 1/4" not in line
    assert not torch.equal(loaded["controller.layers.2.bias"], state["controller.bias"])
    # a 1x1 CondInst controller (same parameter order as VisSTG's dynamic head) is converted
    state["controller.weight"] = state["controller.weight"][:, :, 1:2, 1:2].clone()
    torch.save({"model": state}, pth)
    assert convert_main([str(pth), str(pkl), "--mask-branch-convs", "1", "--controller-convs", "1"]) == 0
    caplog.clear()
    line = load(model, pkl, caplog)
    assert "controller 2/4" in line
    assert torch.equal(model.state_dict()["controller.layers.2.weight"], state["controller.weight"])


def test_converter_errors(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    assert convert_main([str(bad), str(tmp_path / "out.pkl")]) == 1
    assert "bad.pth" in capsys.readouterr().err
    torch.save({"model": {"head.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    assert convert_main([str(tmp_path / "other.pth"), str(tmp_path / "out.pkl")]) == 1
    assert "not an AdelaiDet" in capsys.readouterr().err
    assert not (tmp_path / "out.pkl").exists()


def test_summary_groups():
    keys = [
        "backbone.bottom_up.stem.conv1.weight",
        "backbone.fpn_lateral3.weight",
        "backbone.top_block.p6.weight",
        "det_head.a.weight",
        "det_head.b.weight",
    ]
    line, counts = summarize_loaded(keys, ["det_head.b.weight", "backbone.top_block.p6.weight"], model="VisSTG")
    assert counts == {"ResNet": (1, 1), "FPN": (1, 1), "P6/P7": (0, 1), "det_head": (1, 2)}
    assert "loaded ResNet 1/1, FPN 1/1, det_head 1/2 tensors" in line and "P6/P7 (1), det_head (1)" in line
