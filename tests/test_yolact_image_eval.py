"""Stage 1 as a plain detectron2 image segmenter: the image call on RGNNVIS and YolactSegmenter,
DefaultPredictor, inference_on_dataset + COCOEvaluator, and ``train_net.py --eval-only`` on a COCO-format image
set written from the synthetic generator."""

import json
import os

import cv2
import pytest
import torch
from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import DefaultPredictor
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances

from projects.data.synthetic import generate_synthetic_vis
from tests.coco_fixtures import ytvis_to_coco
from tests.rgnn_fixtures import tiny_cfg
from tests.train_cli import run_cli

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def coco_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn_coco")
    ytvis = generate_synthetic_vis(root, num_videos=2, num_frames=3, height=64, width=96, seed=3, split_name="val")
    coco_json = str(root / "coco_val.json")
    data = ytvis_to_coco(ytvis, coco_json)
    image_root = str(root / "val" / "JPEGImages")
    name = "yolact_test_syn_coco_val"
    if name not in DatasetCatalog.list():
        register_coco_instances(name, {}, coco_json, image_root)
    return name, coco_json, image_root, data


def _model_cfg(meta="RGNNVIS"):
    cfg = tiny_cfg(stage=1)
    cfg.MODEL.META_ARCHITECTURE = meta
    cfg.MODEL.NUM_CLASSES = 6
    cfg.INPUT.MIN_SIZE_TEST = 64
    cfg.INPUT.MAX_SIZE_TEST = 96
    # untrained heads start at 1 % total foreground probability: keep every anchor as a candidate
    cfg.MODEL.RGNN.DETECTOR.IMAGE_TEST.CONF_THRESH = 0.0
    return cfg


def test_image_call_on_rgnn_stage1_and_default_predictor(coco_set):
    _, _, image_root, data = coco_set
    cfg = _model_cfg()
    torch.manual_seed(0)
    predictor = DefaultPredictor(cfg)
    bgr = cv2.imread(os.path.join(image_root, data["images"][0]["file_name"]))
    inst = predictor(bgr)["instances"]
    assert inst.image_size == bgr.shape[:2]
    assert set(inst.get_fields()) == {"pred_boxes", "scores", "pred_classes", "pred_masks"}
    assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape[1:] == bgr.shape[:2]
    assert len(inst) == cfg.MODEL.RGNN.DETECTOR.IMAGE_TEST.MAX_DETECTIONS
    # same model, direct call with a CHW tensor and a different output size: masks / boxes follow it
    image = torch.as_tensor(bgr).permute(2, 0, 1).contiguous()
    out = predictor.model([{"image": image, "height": 128, "width": 192}])[0]["instances"]
    assert out.image_size == (128, 192) and out.pred_masks.shape[1:] == (128, 192)
    same = predictor.model([{"image": image}])[0]["instances"]
    torch.testing.assert_close(same.scores, inst.scores)
    torch.testing.assert_close(out.pred_boxes.tensor, torch.trunc(same.pred_boxes.tensor * 2), atol=1.0, rtol=0)


def test_inference_on_dataset_with_coco_evaluator(coco_set, tmp_path):
    name, _, _, data = coco_set
    cfg = _model_cfg()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    results = inference_on_dataset(
        model, build_detection_test_loader(cfg, name), COCOEvaluator(name, output_dir=str(tmp_path))
    )
    assert {"bbox", "segm"} <= set(results) and all(k in results["segm"] for k in ("AP", "AP50"))
    with open(tmp_path / "coco_instances_results.json") as f:
        preds = json.load(f)
    assert preds and {p["category_id"] for p in preds} <= {c["id"] for c in data["categories"]}
    assert {tuple(p["segmentation"]["size"]) for p in preds} == {(64, 96)}


def test_yolact_segmenter_trains_on_images():
    cfg = _model_cfg("YolactSegmenter")
    model = build_model(cfg)
    model.train()
    masks = torch.zeros(1, 64, 96, dtype=torch.bool)
    masks[0, 10:40, 20:60] = True
    inst = Instances((64, 96))
    inst.gt_masks = BitMasks(masks)
    inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
    inst.gt_classes = torch.tensor([2])
    image = torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8)
    losses = model([{"image": image, "instances": inst}])
    assert set(losses) == {"loss_det_class", "loss_det_box", "loss_det_mask", "loss_det_semantic"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.detector.head.cls.weight.grad.abs().sum() > 0


def test_train_net_eval_only_reports_box_and_mask_ap(coco_set, tmp_path):
    name, coco_json, image_root, _ = coco_set
    args = [
        "--config-file",
        "configs/vis_rgnn/synthetic_R18_stage1.yaml",
        "--eval-only",
        "--dataset",
        f"syn_coco={coco_json}:{image_root}",
        "DATASETS.TRAIN",
        "()",
        "DATASETS.TEST",
        "('syn_coco',)",
        "MODEL.WEIGHTS",
        "",  # an untrained model on purpose (--eval-only requires saying so)
        "MODEL.NUM_CLASSES",
        "6",
        "INPUT.MIN_SIZE_TEST",
        "64",
        "INPUT.MAX_SIZE_TEST",
        "96",
        "DATALOADER.NUM_WORKERS",
        "0",
        "MODEL.FPN.OUT_CHANNELS",
        "16",
        "MODEL.RGNN.DETECTOR.PROTO_CHANNELS",
        "16",
        "MODEL.RGNN.DETECTOR.HEAD_CHANNELS",
        "16",
        "MODEL.RGNN.DETECTOR.IMAGE_TEST.CONF_THRESH",
        "0.0",
        "OUTPUT_DIR",
        str(tmp_path),
    ]
    proc = run_cli("train_net.py", args)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Evaluation results for bbox" in log and "Evaluation results for segm" in log
    assert os.path.exists(tmp_path / "inference" / "syn_coco" / "coco_instances_results.json")


def _yolact_tiny_cfg(stage):
    """The tiny RGNN config in YOLACT's architecture (as the paper configs, Base-RGNN-YOLACT.yaml)."""
    cfg = tiny_cfg(
        stage=stage,
        DETECTOR__ANCHOR_LAYOUT="yolact",
        DETECTOR__SCORE_LOGIT_THRESH=-50.0,
        INIT_THRESHOLD=-50.0,
        TRAIN_INIT_THRESHOLD=-50.0,
        INACTIVE_THRESHOLD=-50.0,
        NETWORK_FORMAT="RGB",
        DETECTOR__IMAGE_TEST__CONF_THRESH=0.0,
    )
    cfg.MODEL.BACKBONE.NAME = "build_yolact_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[24], [48], [96], [192], [384]]
    cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[1.0, 0.5, 2.0]]
    return cfg


def test_rgnn_in_yolact_architecture_trains_both_stages_and_tracks():
    from tests.rgnn_fixtures import H, W, _clip

    torch.manual_seed(0)
    model = build_model(_yolact_tiny_cfg(1)).train()
    assert model.size_divisibility == 0
    losses = model([_clip(1, 0), _clip(1, 1)])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model = build_model(_yolact_tiny_cfg(2)).train()
    losses = model([_clip(3, 0)])
    assert set(losses) == {"loss_class", "loss_mask", "loss_match", "loss_new_track"}
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    torch.nn.init.constant_(model.tracker.mask_reweighting.conv2.bias, 5.0)  # untrained: make masks non-empty
    video = _clip(3)
    del video["instances"]
    (result,) = model([video])
    assert result["tracks"] and all(len(t["segmentations"]) == 3 for t in result["tracks"])
    out = model([{"image": video["image"][0], "height": 2 * H, "width": 2 * W}])[0]["instances"]
    assert out.image_size == (2 * H, 2 * W) and len(out) > 0
