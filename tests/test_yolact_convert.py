"""vis_rgnn.convert_yolact on a synthetic checkpoint with the official YOLACT-R50 key layout and shapes (random
values), and the converted model against a direct re-statement of YOLACT's evaluation path
(tests/yolact_reference.py): same classes, scores, integer boxes and masks."""

import logging
import os
import pickle

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data.transforms import NoOpTransform
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model

from projects.config import add_video_config
from tests.yolact_reference import (
    official_state_dict_layout,
    random_official_state_dict,
    reference_detect,
    reference_raw_outputs,
)
from vis_rgnn import add_rgnn_config
from vis_rgnn.convert_yolact import convert_yolact_state_dict, main

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(name="yolact_R50_coco.yaml", **overrides):
    cfg = get_cfg()
    add_video_config(cfg)
    add_rgnn_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "vis_rgnn", name))
    cfg.MODEL.DEVICE = "cpu"
    cfg.merge_from_list([x for kv in overrides.items() for x in kv])
    return cfg


@pytest.fixture(scope="module")
def official():
    return random_official_state_dict(seed=0)


@pytest.fixture(scope="module")
def converted_file(official, tmp_path_factory):
    d = tmp_path_factory.mktemp("yolact")
    src, dst = d / "yolact_resnet50_54_800000.pth", d / "yolact_r50_coco.pkl"
    torch.save(official, src)
    assert main([str(src), str(dst)]) == 0
    return dst


@pytest.fixture(scope="module")
def yolact_model(converted_file):
    model = build_model(_cfg()).eval()
    DetectionCheckpointer(model).load(str(converted_file))
    return model


def test_layout_is_the_official_354_keys():
    layout = official_state_dict_layout()
    assert len(layout) == 354 and len({k for k, _ in layout}) == 354
    assert layout[0] == ("backbone.layers.0.0.conv1.weight", (64, 64, 1, 1))
    assert layout[-1] == ("semantic_seg_conv.bias", (80,))


def test_every_key_consumed_and_every_parameter_filled(official, converted_file):
    converted, summary = convert_yolact_state_dict(official)
    assert summary == {
        "tensors": 354,
        "backbone": 318,
        "fpn": 16,
        "detector": 20,
        "anchors_per_location": 3,
        "classes": 80,
        "prototypes": 32,
    }
    model_state = build_model(_cfg()).state_dict()
    assert set(converted) == set(model_state)  # nothing left over, nothing missing (buffers included)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in model_state.items()}
    with open(converted_file, "rb") as f:
        data = pickle.load(f)
    assert data["matching_heuristics"] is False and set(data["model"]) == set(model_state)


def test_checkpoint_loads_exactly(official, yolact_model):
    sd = yolact_model.state_dict()
    torch.testing.assert_close(sd["backbone.bottom_up.stem.conv1.weight"], official["backbone.conv1.weight"])
    torch.testing.assert_close(
        sd["backbone.bottom_up.res5.2.conv3.norm.running_var"], official["backbone.layers.3.2.bn3.running_var"]
    )
    torch.testing.assert_close(
        sd["backbone.bottom_up.res3.0.shortcut.weight"], official["backbone.layers.1.0.downsample.0.weight"]
    )
    torch.testing.assert_close(sd["backbone.fpn_lateral5.weight"], official["fpn.lat_layers.0.weight"])  # C5 first
    torch.testing.assert_close(sd["backbone.fpn_output3.bias"], official["fpn.pred_layers.2.bias"])
    torch.testing.assert_close(sd["backbone.p7.weight"], official["fpn.downsample_layers.1.weight"])
    torch.testing.assert_close(sd["detector.protonet.post.0.weight"], official["proto_net.8.weight"])
    torch.testing.assert_close(sd["detector.protonet.post.2.bias"], official["proto_net.10.bias"])
    # class layer: per anchor, YOLACT's [background, 80 classes] -> [80 classes, background]
    ours, theirs = sd["detector.head.cls.bias"].view(3, 81), official["prediction_layers.0.conf_layer.bias"].view(3, 81)
    torch.testing.assert_close(ours[:, 80], theirs[:, 0])
    torch.testing.assert_close(ours[:, :80], theirs[:, 1:])


def _assert_same_detections(inst, ref, height, width):
    classes, scores, boxes, masks = ref
    assert len(inst) == len(classes) > 0
    assert inst.image_size == (height, width)
    assert torch.equal(inst.pred_classes, classes)
    assert (inst.scores - scores).abs().max() < 1e-4
    assert (inst.pred_boxes.tensor - boxes.float()).abs().max() <= 1.0
    inter = (inst.pred_masks & masks).flatten(1).sum(1).float()
    union = (inst.pred_masks | masks).flatten(1).sum(1).float()
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    assert iou.min() >= 0.97 and masks.any()


def test_converted_model_is_yolact(official, yolact_model, converted_file):
    """The detectron2 image call (BGR uint8, any size, resized to 550 x 550 inside) = YOLACT's detections."""
    g = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (300, 400, 3), dtype=torch.uint8, generator=g)
    image[60:200, 100:300] = torch.tensor([30, 200, 90], dtype=torch.uint8)  # a flat BGR patch (not grey)
    ref = reference_detect(*reference_raw_outputs(official, image), 300, 400)
    inst = yolact_model([{"image": image.permute(2, 0, 1).contiguous(), "height": 300, "width": 400}])[0]["instances"]
    _assert_same_detections(inst, ref, 300, 400)
    # DefaultPredictor on the BGR numpy image: no loader resize (MIN_SIZE_TEST 0), same detections
    cfg = _cfg(**{"MODEL.WEIGHTS": str(converted_file)})
    predictor = DefaultPredictor(cfg)
    assert isinstance(predictor.aug.get_transform(image.numpy()), NoOpTransform)
    _assert_same_detections(predictor(image.numpy())["instances"], ref, 300, 400)


def test_converter_rejects_foreign_and_corrupt_checkpoints(official, tmp_path):
    bad = dict(official)
    bad["fpn.extra.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="fpn.extra.weight"):
        convert_yolact_state_dict(bad)
    unshared = dict(official)
    unshared["prediction_layers.1.bbox_layer.weight"] = official["prediction_layers.0.bbox_layer.weight"]
    with pytest.raises(KeyError, match="shared"):
        convert_yolact_state_dict(unshared)
    corrupt = tmp_path / "broken.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="broken.pth"):
        main([str(corrupt), str(tmp_path / "out.pkl")])


def test_rgnn_paper_config_starts_from_converted_yolact(converted_file, caplog):
    """R50 stage 1 (YouTube-VIS, 40 classes): everything but the class-dependent layers comes from YOLACT."""
    cfg = _cfg("R50_FPN_stage1_120ep_ytvis19.yaml", **{"MODEL.NUM_CLASSES": 40})
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.WARNING):
        DetectionCheckpointer(model).load(str(converted_file))
    with open(converted_file, "rb") as f:
        ckpt = pickle.load(f)["model"]
    after = model.state_dict()
    replaced = {k for k in ckpt if tuple(ckpt[k].shape) != tuple(after[k].shape)}
    assert replaced == {
        "detector.head.cls.weight",
        "detector.head.cls.bias",
        "detector.semantic.weight",
        "detector.semantic.bias",
    }
    for k in set(ckpt) - replaced:
        torch.testing.assert_close(after[k], torch.as_tensor(ckpt[k]), msg=k)
    for k in replaced:
        torch.testing.assert_close(after[k], before[k])  # stays at its (YouTube-VIS-sized) initialisation
    assert after["detector.head.cls.weight"].shape[0] == 3 * 41
    not_yolact = {k.split(".")[0] for k in after if k not in ckpt}
    assert not_yolact <= {"appearance", "tracker", "pixel_mean", "pixel_std", "rgnn_stage", "rgnn_tracker_version"}
