"""demo/demo.py and VideoPredictor on an mp4 written by the synthetic generator, with a briefly trained VisSTG."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from projects.data.synthetic import generate_synthetic_vis
from projects.evaluation import evaluate_ytvis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/vis_stg/synthetic_R18.yaml"
SMALL = ["INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "160", "INPUT.MIN_SIZE_TRAIN", "(96,)"]


def _env():
    return dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A 2-iteration VisSTG checkpoint and a 7-frame synthetic mp4 (+ its GT JSON)."""
    tmp = tmp_path_factory.mktemp("demo")
    gt_json = generate_synthetic_vis(str(tmp / "data"), 1, 7, 100, 150, seed=3, split_name="demo", write_mp4=True)
    video = str(tmp / "data" / "demo" / "videos" / "vid_0001.mp4")
    out = tmp / "train"
    proc = subprocess.run(
        [sys.executable, "train_net.py", "--config-file", CONFIG, "--dataset", f"demo_train={gt_json}:{tmp / 'data' / 'demo' / 'JPEGImages'}",
         "DATASETS.TRAIN", "('demo_train',)", "DATASETS.TEST", "()", "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "1",
         "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(out), *SMALL],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"training the demo model failed:\n{proc.stderr[-4000:]}"
    return {"tmp": tmp, "gt_json": gt_json, "video": video, "weights": str(out / "model_final.pth")}


def _demo(*args):
    return subprocess.run(
        [sys.executable, "demo/demo.py", "--config-file", CONFIG, *args], cwd=ROOT, env=_env(), capture_output=True,
        text=True, timeout=600,
    )


def test_demo_writes_video_and_json_the_evaluator_accepts(assets):
    out_mp4, out_json = str(assets["tmp"] / "out.mp4"), str(assets["tmp"] / "out.json")
    proc = _demo("--video-input", assets["video"], "--output", out_mp4, "--json", out_json,
                 "--confidence-threshold", "0.0", "MODEL.WEIGHTS", assets["weights"], *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "processed 7 frames" in proc.stdout
    cap = cv2.VideoCapture(out_mp4)
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 7 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 150  # original size, not the 96-px input
    results = json.load(open(out_json))
    assert all(len(r["segmentations"]) == 7 and r["video_id"] == 1 for r in results)
    metrics = evaluate_ytvis(assets["gt_json"], results)
    assert 0.0 <= metrics["AP"] <= 1.0


def test_streaming_equals_whole_video(assets):
    from demo.demo import setup_cfg
    from demo.predictor import VideoPredictor
    from demo.video_io import VideoSource
    import argparse

    cfg = setup_cfg(argparse.Namespace(config_file=CONFIG, opts=["MODEL.WEIGHTS", assets["weights"], *SMALL,
                                                                  "DATASETS.TRAIN", "()", "MODEL.NUM_CLASSES", "6",
                                                                  # no top-k cut: streaming yields every track
                                                                  "TEST.VIDEO.MAX_TRACKS", "100000"]))
    predictor = VideoPredictor(cfg)
    frames = list(VideoSource(assets["video"]))
    assert len(frames) == 7
    whole = predictor(frames)
    streamed = {}
    for r in predictor.stream(iter(frames)):
        for tid, mask in zip(r.instances.track_ids.tolist(), r.instances.pred_masks):
            streamed.setdefault(tid, {})[r.frame_idx] = mask
    assert len(whole["tracks"]) == len([t for t in streamed.values() if any(m.any() for m in t.values())])
    from projects.utils.masks import decode_mask

    for track in whole["tracks"]:
        frames_with_mask = {t for t, s in enumerate(track["segmentations"]) if s is not None}
        matches = [tid for tid, masks in streamed.items()
                   if {t for t, m in masks.items() if m.any()} == frames_with_mask
                   and all(np.array_equal(decode_mask(track["segmentations"][t], 100, 150), masks[t].numpy()) for t in frames_with_mask)]
        assert matches, "a whole-video track has no identical streamed track"


def test_bad_inputs_give_clear_errors(assets):
    tmp = assets["tmp"]
    corrupt = tmp / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video")
    proc = _demo("--video-input", str(corrupt), "MODEL.WEIGHTS", assets["weights"], *SMALL)
    assert proc.returncode != 0 and "cannot read any frame" in proc.stderr
    proc = _demo("--video-input", assets["video"], "MODEL.WEIGHTS", str(tmp / "missing.pth"), *SMALL)
    assert proc.returncode != 0 and "weights file not found" in proc.stderr
    proc = _demo("--video-input", assets["video"], "MODEL.WEIGHTS", assets["weights"], "MODEL.FPN.OUT_CHANNELS", "32", *SMALL)
    assert proc.returncode != 0 and "does not match the config's model" in proc.stderr
    empty_dir = tmp / "empty_frames"
    empty_dir.mkdir()
    proc = _demo("--video-input", str(empty_dir), "MODEL.WEIGHTS", assets["weights"], *SMALL)
    assert proc.returncode != 0 and "no image frames" in proc.stderr


def test_interrupted_run_keeps_valid_outputs(assets, monkeypatch):
    """A failure mid-video (here: a frame of another size) still leaves a playable mp4 and a valid JSON."""
    frames_dir = assets["tmp"] / "frames"
    frames_dir.mkdir(exist_ok=True)
    cap = cv2.VideoCapture(assets["video"])
    for i in range(5):
        ok, f = cap.read()
        if i == 3:
            f = cv2.resize(f, (80, 60))
        cv2.imwrite(str(frames_dir / f"{i:05d}.jpg"), f)
    out_mp4, out_json = str(assets["tmp"] / "partial.mp4"), str(assets["tmp"] / "partial.json")
    proc = _demo("--video-input", str(frames_dir), "--output", out_mp4, "--json", out_json,
                 "MODEL.WEIGHTS", assets["weights"], *SMALL)
    assert proc.returncode != 0 and "all frames of a video must have one size" in proc.stderr
    cap = cv2.VideoCapture(out_mp4)
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 3
    results = json.load(open(out_json))
    assert all(len(r["segmentations"]) == 3 for r in results)
