"""Caps that drop objects say so: ``INFERENCE.TOPK_CANDIDATES`` / ``MAX_DETECTIONS`` overflows are counted per
frame on the device, per video by ``VisSTG.video_diagnostics``, and summed into ``metrics.json``; tracks cut by
``TEST.VIDEO.MAX_TRACKS`` are counted per video by ``run_online_inference`` and summed the same way."""

import json
import logging
import uuid

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model

from projects.evaluation import YTVISEvaluator
from projects.modeling import run_online_inference
from tests.vis_stg_fixtures import H, W, moving_box_video, tiny_cfg
from vis_stg.detection_head import CenterNetHead

torch.set_num_threads(1)
SHAPES, STRIDES = [(8, 12), (4, 6)], [8, 16]


def _peaks(cells, score_logit=3.0):
    """Heat maps of 2 classes with the given (level, class, x, y) peaks, boxes of 1 cell."""
    heat = [torch.full((1, 2, h, w), -10.0) for h, w in SHAPES]
    for lvl, c, x, y in cells:
        heat[lvl][0, c, y, x] = score_logit
    sizes = [torch.ones(1, 2, h, w) for h, w in SHAPES]
    offsets = [torch.full((1, 2, h, w), 0.5) for h, w in SHAPES]
    return heat, sizes, offsets


def test_inference_counts_what_each_cap_drops():
    # 6 separate peaks above the threshold (no NMS overlap), 2 of them on level 1.
    cells = [(0, 0, 1, 1), (0, 1, 4, 1), (0, 0, 8, 2), (0, 1, 2, 6), (1, 0, 4, 2), (1, 1, 1, 1)]
    heat, sizes, offsets = _peaks(cells)
    heat[0][0, 0, 5, 5] = -5.0  # a peak below the threshold: never counted
    dets, _ = CenterNetHead.inference(heat, sizes, offsets, STRIDES, score_thresh=0.05, topk=10, max_detections=4)
    assert dets.valid.tolist() == [True] * 4 and dets.dropped.tolist() == [0, 2]  # 6 kept by NMS, 4 slots
    dets, _ = CenterNetHead.inference(heat, sizes, offsets, STRIDES, score_thresh=0.05, topk=5, max_detections=10)
    assert dets.valid.sum() == 5 and dets.dropped.tolist() == [1, 0]  # 6 peaks, 5 candidates
    dets, _ = CenterNetHead.inference(heat, sizes, offsets, STRIDES, score_thresh=0.05, topk=8, max_detections=6)
    assert dets.valid.sum() == 6 and dets.dropped.tolist() == [0, 0]  # exactly at the caps: nothing dropped


def _register(tmp_path):
    """One annotated 3-frame video (id 3) of the tiny model's 3 classes."""
    segm = mask_util.encode(np.asfortranarray(np.pad(np.ones((10, 10), np.uint8), ((8, H - 18), (8, W - 18)))))
    segm["counts"] = segm["counts"].decode()
    gt = {
        "videos": [{"id": 3, "height": H, "width": W, "length": 3, "file_names": ["a", "b", "c"]}],
        "categories": [{"id": i + 1, "name": f"c{i}"} for i in range(3)],
        "annotations": [
            {"id": 1, "video_id": 3, "category_id": 1, "iscrowd": 0, "segmentations": [segm] * 3, "areas": [100] * 3}
        ],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    name = f"vis_stg_caps_test_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).set(
        json_file=str(tmp_path / "gt.json"),
        thing_classes=["c0", "c1", "c2"],
        thing_dataset_id_to_contiguous_id={1: 0, 2: 1, 3: 2},
    )
    return name


def test_frames_over_the_cap_are_counted_per_video_and_written_to_metrics_json(tmp_path, caplog):
    torch.manual_seed(0)
    # Threshold 0 with random weights: every 3x3 peak is a detection, far more than 2 slots or 10 candidates.
    model = build_model(
        tiny_cfg(**{"INFERENCE.SCORE_THRESH": 0.0, "INFERENCE.MAX_DETECTIONS": 2, "INFERENCE.TOPK_CANDIDATES": 10})
    ).eval()
    video = moving_box_video()
    (result,) = model([video])
    diag = result["diagnostics"]
    assert diag["frames"] == 3 and diag["frames_over_max_detections"] == 3 and diag["frames_over_topk_candidates"] == 3
    assert diag["detections_over_max_detections"] >= 3 and diag["candidates_over_topk_candidates"] >= 3

    roomy = build_model(tiny_cfg(**{"INFERENCE.MAX_DETECTIONS": 500, "INFERENCE.TOPK_CANDIDATES": 500})).eval()
    (roomy_result,) = roomy([video])
    assert roomy_result["diagnostics"]["frames_over_max_detections"] == 0
    assert roomy_result["diagnostics"]["frames_over_topk_candidates"] == 0

    evaluator = YTVISEvaluator(_register(tmp_path), output_dir=str(tmp_path), distributed=False)
    evaluator.reset()
    with caplog.at_level(logging.INFO, logger="projects.evaluation.evaluator"):
        evaluator.process([video], [result])
        evaluator.process([{**video, "video_id": 4}], [{**roomy_result, "video_id": 3}])
        evaluator.evaluate()
    assert "video 3: frames 3, frames_over_max_detections 3" in caplog.text
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert "AP" in written["segm"]
    expected = {k: diag[k] + roomy_result["diagnostics"][k] for k in diag}
    assert written["diagnostics"] == {"videos": 2, **expected}


def test_tracks_cut_by_max_tracks_are_counted_per_video_and_written_to_metrics_json(tmp_path, caplog):
    torch.manual_seed(0)
    cfg = tiny_cfg(**{"INFERENCE.SCORE_THRESH": 0.0})  # random weights, threshold 0: many one-frame tracks
    cfg.TEST.VIDEO.MAX_TRACKS = 2
    model = build_model(cfg).eval()
    video = moving_box_video()
    uncapped = len(run_online_inference(model, video, max_tracks=10**6)["tracks"])
    assert uncapped > 2
    (result,) = model([video])
    assert len(result["tracks"]) == 2
    diag = result["diagnostics"]
    assert diag["videos_over_max_tracks"] == 1 and diag["tracks_over_max_tracks"] == uncapped - 2

    evaluator = YTVISEvaluator(_register(tmp_path), output_dir=str(tmp_path), distributed=False)
    evaluator.reset()
    with caplog.at_level(logging.INFO, logger="projects.evaluation.evaluator"):
        evaluator.process([video], [result])
        evaluator.evaluate()
    assert f"videos_over_max_tracks 1, tracks_over_max_tracks {uncapped - 2}" in caplog.text
    written = json.loads((tmp_path / "metrics.json").read_text())["diagnostics"]
    assert written["videos"] == 1 and written["videos_over_max_tracks"] == 1
    assert written["tracks_over_max_tracks"] == uncapped - 2
