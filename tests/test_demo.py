"""demo/demo.py and VideoPredictor with a briefly trained VisSTG (5 classes, a user's --dataset): the training
output's config, class names stored with the model, damaged inputs, odd/4K sizes, one-line errors."""

import argparse
import json
import os
import re
import subprocess

import cv2
import numpy as np
import pytest
import torch

from projects.data.synthetic import generate_synthetic_vis
from projects.evaluation import evaluate_ytvis
from tests.train_cli import RGNN_NARROW, run_cli

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

CONFIG = "configs/vis_stg/synthetic_R18.yaml"
SMALL = ["INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "160", "INPUT.MIN_SIZE_TRAIN", "(96,)"]
KEEP_MASKS = ["TEST.VIDEO.MASK_THRESHOLD", "0.0"]  # every detection keeps a non-empty mask
MINE_ONLY = ["DATASETS.TRAIN", "('mine_train',)", "DATASETS.TEST", "()"]


def _five_class_json(src_json, dst_json):
    """The synthetic GT cut to 5 classes with non-contiguous ids 10..50 (a user's own dataset)."""
    data = json.load(open(src_json))
    new_id = {c["id"]: 10 * c["id"] for c in data["categories"] if c["id"] <= 5}
    data["categories"] = [
        dict(c, id=new_id[c["id"]], name=f"mine_{c['name']}") for c in data["categories"] if c["id"] in new_id
    ]
    data["annotations"] = [
        dict(a, category_id=new_id[a["category_id"]]) for a in data["annotations"] if a["category_id"] in new_id
    ]
    json.dump(data, open(dst_json, "w"))
    return str(dst_json)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A 2-iteration VisSTG trained with --dataset mine_train=... (5 classes) and a 7-frame synthetic mp4."""
    tmp = tmp_path_factory.mktemp("demo")
    synth_json = generate_synthetic_vis(str(tmp / "data"), 1, 7, 100, 150, seed=3, split_name="demo", write_mp4=True)
    gt_json = _five_class_json(synth_json, tmp / "mine.json")
    video = str(tmp / "data" / "demo" / "videos" / "vid_0001.mp4")
    out = tmp / "train"
    frames_root = tmp / "data" / "demo" / "JPEGImages"
    train = ["--config-file", CONFIG, "--dataset", f"mine_train={gt_json}:{frames_root}", *MINE_ONLY]
    train += ["SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "1", "DATALOADER.NUM_WORKERS", "0", "SEED", "0"]
    # A 2-iteration model's masks can all be below 0.5 (then every track is empty and the results list is too):
    # these tests check the demo's input / output handling, not mask quality.
    proc = run_cli("train_net.py", [*train, *KEEP_MASKS, "OUTPUT_DIR", out, *SMALL])
    assert proc.returncode == 0, f"training the demo model failed:\n{proc.stderr[-4000:]}"
    return {
        "tmp": tmp,
        "gt_json": gt_json,
        "synth_json": synth_json,
        "video": video,
        "out": out,
        "frames_root": str(frames_root),
        "weights": str(out / "model_final.pth"),
    }


class _Run:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def demo(capsys):
    """demo.main in this process (no interpreter start-up per run); same exit code / stdout / stderr."""
    from demo.demo import main

    def run(*args, config=CONFIG):
        capsys.readouterr()
        code = main(["--config-file", str(config), *map(str, args)])
        out, err = capsys.readouterr()
        return _Run(code, out, err)

    return run


def _demo(*args, config=CONFIG):
    """demo/demo.py as a user runs it (a fresh interpreter)."""
    return run_cli("demo/demo.py", ["--config-file", config, *args])


def _json(assets):
    """``--json`` to a scratch file: a demo run must write something."""
    return ["--json", str(assets["tmp"] / "scratch.json")]


def _one_line_error(proc, text):
    """The run failed with exactly one ``error:`` line containing ``text`` and no traceback."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(errors) == 1 and text in errors[0], proc.stderr[-3000:]


def _frames_of(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n, cap.get(cv2.CAP_PROP_FRAME_WIDTH)


def test_training_stores_the_class_names_with_the_model(assets):
    meta = json.load(open(assets["out"] / "model_metadata.json"))
    assert meta["dataset"] == "mine_train" and len(meta["thing_classes"]) == 5
    assert meta["thing_classes"][0].startswith("mine_")
    ckpt = torch.load(assets["weights"], map_location="cpu", weights_only=True)
    assert ckpt["model_metadata"]["thing_classes"] == meta["thing_classes"]


def test_demo_with_the_training_output_config(assets):
    """detectron2's usual flow: OUTPUT_DIR/config.yaml + model_final.pth; 'mine_train' is not registered here."""
    out_mp4, out_json = str(assets["tmp"] / "out.mp4"), str(assets["tmp"] / "out.json")
    proc = _demo(
        "--video-input",
        assets["video"],
        "--output",
        out_mp4,
        "--json",
        out_json,
        "--confidence-threshold",
        "0.0",
        "MODEL.WEIGHTS",
        assets["weights"],
        "MODEL.VIS_STG.INFERENCE.SCORE_THRESH",
        "0.0",
        config=assets["out"] / "config.yaml",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "processed 7 frames" in proc.stdout
    assert _frames_of(out_mp4) == (7, 150)  # original size, not the 96-px input
    codec = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", out_mp4], capture_output=True, text=True
    )
    assert "Video: h264" in codec.stderr
    results = json.load(open(out_json))
    assert results and all(len(r["segmentations"]) == 7 and r["video_id"] == 1 for r in results)
    assert {r["category_id"] for r in results} <= {10, 20, 30, 40, 50}  # the user's dataset ids
    ids = [r["track_id"] for r in results]  # the ids drawn in the video (the results viewer colours by them)
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids)
    metrics = evaluate_ytvis(assets["gt_json"], results)
    assert 0.0 <= metrics["AP"] <= 1.0


def test_demo_with_the_generic_config_and_a_gif(assets, demo):
    """The synthetic config names a 6-class dataset; the 5 classes stored with the weights win."""
    out_gif = assets["tmp"] / "out.gif"
    proc = demo(
        "--video-input",
        assets["video"],
        "--output",
        str(out_gif),
        "--max-frames",
        "4",
        "MODEL.WEIGHTS",
        assets["weights"],
        *SMALL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from PIL import Image, ImageSequence

    with Image.open(out_gif) as im:
        assert im.size == (150, 100) and sum(1 for _ in ImageSequence.Iterator(im)) == 4


def test_demo_dataset_flag(assets, tmp_path, demo):
    """--dataset NAME=JSON:ROOT as in train_net.py; class lists are checked against the stored one."""
    stripped = tmp_path / "model.pth"  # an old checkpoint: no stored class names
    ckpt = torch.load(assets["weights"], map_location="cpu", weights_only=True)
    ckpt.pop("model_metadata")
    torch.save(ckpt, stripped)
    proc = demo(
        *_json(assets),
        "--video-input",
        assets["video"],
        "--max-frames",
        "2",
        "MODEL.WEIGHTS",
        str(stripped),
        config=assets["out"] / "config.yaml",
    )
    _one_line_error(proc, "cannot find the model's class names")
    proc = demo(
        *_json(assets),
        "--video-input",
        assets["video"],
        "--max-frames",
        "2",
        "--dataset",
        f"mine_train={assets['gt_json']}:{assets['frames_root']}",
        "MODEL.WEIGHTS",
        str(stripped),
        config=assets["out"] / "config.yaml",
    )
    assert proc.returncode == 0 and "processed 2 frames" in proc.stdout, proc.stderr[-3000:]
    proc = demo(
        *_json(assets),
        "--video-input",
        assets["video"],
        "--dataset",
        f"six={assets['synth_json']}:{assets['frames_root']}",
        "MODEL.WEIGHTS",
        assets["weights"],
        *SMALL,
    )
    _one_line_error(proc, "has 6 classes but the model")
    proc = demo(
        *_json(assets),
        "--video-input",
        assets["video"],
        "--dataset",
        "no-colon-here",
        "MODEL.WEIGHTS",
        assets["weights"],
    )
    _one_line_error(proc, "--dataset expects NAME=")


def _predictor(assets, *opts):
    """A ``VideoPredictor`` of the trained model, configured as ``demo/demo.py`` does, with ``opts`` added."""
    from demo.demo import setup_cfg
    from projects.engine.predictor import VideoPredictor

    opts = ["MODEL.WEIGHTS", assets["weights"], *SMALL, *opts]
    return VideoPredictor(setup_cfg(argparse.Namespace(config_file=CONFIG, opts=opts)))


def test_streaming_equals_whole_video(assets):
    from projects.utils.video_io import VideoSource

    predictor = _predictor(assets, "TEST.VIDEO.MAX_TRACKS", "100000")  # no top-k cut: streaming yields every track
    assert predictor.cfg.MODEL.NUM_CLASSES == 5 and predictor.metadata.thing_classes[0].startswith("mine_")
    frames = list(VideoSource(assets["video"]))
    assert len(frames) == 7
    whole = predictor(frames)
    streamed = {}
    for r in predictor.stream(iter(frames)):
        for tid, mask in zip(r.instances.track_ids.tolist(), r.instances.pred_masks):
            streamed.setdefault(tid, {})[r.frame_idx] = mask
    assert len(whole["tracks"]) == len([t for t in streamed.values() if any(m.any() for m in t.values())])
    assert whole["tracks_over_max_tracks"] == 0
    # The cap keeps the best tracks and says how many it dropped (every detection kept, so there are several).
    keep_all = [*KEEP_MASKS, "MODEL.VIS_STG.INFERENCE.SCORE_THRESH", "0.0"]
    uncapped = _predictor(assets, "TEST.VIDEO.MAX_TRACKS", "100000", *keep_all)(frames)
    capped = _predictor(assets, "TEST.VIDEO.MAX_TRACKS", "1", *keep_all)(frames)
    assert len(uncapped["tracks"]) > 1 and uncapped["tracks_over_max_tracks"] == 0
    assert len(capped["tracks"]) == 1 and capped["tracks_over_max_tracks"] == len(uncapped["tracks"]) - 1
    from projects.utils.masks import decode_mask

    for track in whole["tracks"]:
        frames_with_mask = {t for t, s in enumerate(track["segmentations"]) if s is not None}
        matches = [
            tid
            for tid, masks in streamed.items()
            if {t for t, m in masks.items() if m.any()} == frames_with_mask
            and all(
                np.array_equal(decode_mask(track["segmentations"][t], 100, 150), masks[t].numpy())
                for t in frames_with_mask
            )
        ]
        assert matches, "a whole-video track has no identical streamed track"


@pytest.mark.parametrize("h,w", [(576, 768), (528, 720), (2160, 3840)])
def test_frame_sizes_off_the_stride_and_4k(assets, h, w):
    """Sizes that are not multiples of the stride, and 4K (resized to the test size): masks at the input size."""
    from projects.utils.video_io import VideoSource

    predictor = _predictor(
        assets, "MODEL.VIS_STG.INFERENCE.SCORE_THRESH", "0.0", "MODEL.VIS_STG.INFERENCE.MAX_DETECTIONS", "3"
    )
    frames = [cv2.resize(f, (w, h)) for f in list(VideoSource(assets["video"]))[:2]]
    assert max(predictor._preprocess(frames[0]).shape[1:]) <= 160  # resized to the test size first
    results = list(predictor.stream(frames))
    assert len(results) == 2
    for r in results:
        assert r.instances.image_size == (h, w)
        assert len(r.instances) > 0 and tuple(r.instances.pred_masks.shape[1:]) == (h, w)


def test_bad_inputs_give_one_line_errors(assets, demo):
    tmp = assets["tmp"]
    corrupt = tmp / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video")
    video, weights = [*_json(assets), "--video-input", assets["video"]], ["MODEL.WEIGHTS", assets["weights"]]
    _one_line_error(
        demo(*_json(assets), "--video-input", str(corrupt), *weights, *SMALL),
        "cannot read any frame",
    )
    _one_line_error(demo(*video, "MODEL.WEIGHTS", str(tmp / "missing.pth"), *SMALL), "weights file not found")
    _one_line_error(demo(*video, *weights, "MODEL.FPN.OUT_CHANNELS", "32", *SMALL), "does not match the config's model")
    empty_dir = tmp / "empty_frames"
    empty_dir.mkdir(exist_ok=True)
    _one_line_error(demo(*_json(assets), "--video-input", str(empty_dir), *weights, *SMALL), "no image frames")
    _one_line_error(demo(*video, *weights, "MODEL.NO_SUCH_KEY", "1"), "MODEL.NO_SUCH_KEY")
    _one_line_error(demo(*video, config=tmp / "nope.yaml"), "config file does not exist")
    _one_line_error(demo(*video, "--output", str(tmp / "x.avi"), *weights), "output must end with")


def test_corrupt_frame_file_is_skipped_or_strict_fails(assets, tmp_path, demo):
    src = sorted(os.listdir(os.path.join(assets["frames_root"], "vid_0001")))[:5]
    for i, name in enumerate(src):
        data = open(os.path.join(assets["frames_root"], "vid_0001", name), "rb").read()
        (tmp_path / f"{i:05d}.jpg").write_bytes(data[: len(data) // 2] if i == 2 else data)  # frame 2 truncated
    out_json = tmp_path / "r.json"
    proc = demo(
        "--video-input",
        str(tmp_path),
        "--json",
        str(out_json),
        "--confidence-threshold",
        "0.0",
        "MODEL.WEIGHTS",
        assets["weights"],
        *SMALL,
        *KEEP_MASKS,
        "MODEL.VIS_STG.INFERENCE.SCORE_THRESH",
        "0.0",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning:" in proc.stderr and "00002.jpg" in proc.stderr and "skipped" in proc.stderr
    assert "processed 4 frames" in proc.stdout and "1 frame files skipped" in proc.stdout
    results = json.load(open(out_json))
    assert results and all(len(r["segmentations"]) == 5 and r["segmentations"][2] is None for r in results)
    _one_line_error(
        demo(*_json(assets), "--video-input", str(tmp_path), "--strict", "MODEL.WEIGHTS", assets["weights"], *SMALL),
        "00002.jpg",
    )


def test_truncated_video_warns_and_keeps_outputs(assets, tmp_path, demo):
    from projects.utils.video_io import VideoSource, VideoWriter

    full = tmp_path / "full.mp4"
    writer = VideoWriter(str(full), 25)
    frames = list(VideoSource(assets["video"]))
    for i in range(60):
        writer.write(frames[i % len(frames)])
    writer.close()
    data = full.read_bytes()
    mdat = data.index(b"mdat")
    (tmp_path / "cut.mp4").write_bytes(data[: mdat + (len(data) - mdat) // 4])
    out_json = tmp_path / "cut.json"
    proc = demo(
        "--video-input",
        str(tmp_path / "cut.mp4"),
        "--json",
        str(out_json),
        "--output",
        str(tmp_path / "o.mp4"),
        "MODEL.WEIGHTS",
        assets["weights"],
        *SMALL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = re.search(r"decoded (\d+) of 60 frames", proc.stderr)
    assert m and 0 < int(m.group(1)) < 60, proc.stderr[-3000:]
    n = int(m.group(1))
    assert f"processed {n} frames" in proc.stdout and _frames_of(tmp_path / "o.mp4")[0] == n
    assert all(len(r["segmentations"]) == n for r in json.load(open(out_json)))
    _one_line_error(
        demo(
            *_json(assets),
            "--video-input",
            str(tmp_path / "cut.mp4"),
            "--strict",
            "MODEL.WEIGHTS",
            assets["weights"],
            *SMALL,
        ),
        "decoded",
    )


def test_interrupted_run_keeps_valid_outputs(assets, demo):
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
    proc = demo(
        "--video-input",
        str(frames_dir),
        "--output",
        out_mp4,
        "--json",
        out_json,
        "MODEL.WEIGHTS",
        assets["weights"],
        *SMALL,
    )
    _one_line_error(proc, "all frames of a video must have one size")
    assert _frames_of(out_mp4)[0] == 3
    results = json.load(open(out_json))
    assert all(len(r["segmentations"]) == 5 for r in results)  # a frame folder keeps its length
    assert "00003.jpg" in proc.stderr  # the odd frame is named


def test_misleading_one_liners_are_clear(assets, demo):
    """Issue 23: each of these is one line saying what is wrong, exit non-zero, before any work."""
    video = ["--video-input", assets["video"]]
    weights = ["MODEL.WEIGHTS", assets["weights"], *SMALL]
    for n in ("-1", "0"):
        _one_line_error(demo(*video, *_json(assets), "--max-frames", n, *weights), "--max-frames must be at least 1")
    # no output asked for: refused up front (here even before the missing weights file is looked at)
    proc = demo(*video, "MODEL.WEIGHTS", str(assets["tmp"] / "missing.pth"))
    _one_line_error(proc, "nothing would be written: give --output")
    _one_line_error(demo(*video, *_json(assets), "--confidence-threshold", "5", *weights), "--confidence-threshold")
    # a flag after MODEL.WEIGHTS ... (argparse gives it to the config): said so, not "Non-existent key: --json"
    _one_line_error(demo(*video, *weights, *_json(assets)), "--json comes after the config overrides")


def test_a_file_that_is_not_a_checkpoint_is_named(assets, demo):
    """MODEL.WEIGHTS some.jpg: one line naming the file, not PyTorch's advice to pass weights_only=False."""
    jpg = os.path.join(
        assets["frames_root"], "vid_0001", sorted(os.listdir(os.path.join(assets["frames_root"], "vid_0001")))[0]
    )
    proc = demo("--video-input", assets["video"], *_json(assets), "MODEL.WEIGHTS", jpg, *SMALL)
    _one_line_error(proc, jpg)
    assert "weights_only" not in proc.stderr and "not a" in proc.stderr and "checkpoint" in proc.stderr


def test_no_track_says_what_to_try(assets, demo):
    """A model that finds nothing: '0 tracks' plus the config key to lower and 'a longer training'; exit 0 (an
    empty result is a result). Tracks that are all under --confidence-threshold: an empty video, said so."""
    out_mp4 = str(assets["tmp"] / "none.mp4")
    video = ["--video-input", assets["video"], "--max-frames", "3", "--output", out_mp4]
    opts = ["MODEL.WEIGHTS", assets["weights"], *SMALL]
    proc = demo(*video, *opts, "MODEL.VIS_STG.INFERENCE.SCORE_THRESH", "1.0")
    assert proc.returncode == 0 and "; 0 tracks" in proc.stdout, proc.stderr[-3000:]
    hint = [line for line in proc.stderr.splitlines() if line.startswith("warning: no track")]
    assert len(hint) == 1, proc.stderr[-3000:]
    assert "MODEL.VIS_STG.INFERENCE.SCORE_THRESH (now 1)" in hint[0] and "longer training" in hint[0]
    assert "TEST.VIDEO.MASK_THRESHOLD" in hint[0]
    keep_all = [*opts, *KEEP_MASKS, "MODEL.VIS_STG.INFERENCE.SCORE_THRESH", "0.0"]
    proc = demo(*video, "--confidence-threshold", "1.0", *keep_all)
    assert proc.returncode == 0 and "; 0 tracks" not in proc.stdout, proc.stderr[-3000:]
    assert "the video shows no mask" in proc.stderr and "lower --confidence-threshold" in proc.stderr
    proc = demo(*video, "--confidence-threshold", "0.0", *keep_all)
    assert proc.returncode == 0 and "warning: no track" not in proc.stderr and "shows no mask" not in proc.stderr


@pytest.fixture(scope="module")
def rgnn_weights(assets):
    """An RGNN-VIS stage-2 checkpoint written by train_net.py (1 iteration, narrow heads, the 5-class dataset)."""
    out = assets["tmp"] / "rgnn"
    train = ["--config-file", "configs/vis_rgnn/synthetic_R18_stage2.yaml"]
    train += ["--dataset", f"mine_train={assets['gt_json']}:{assets['frames_root']}", *MINE_ONLY]
    # stage 2 from scratch: the checkpoint is what matters here, not the model's quality
    train += ["MODEL.WEIGHTS", "", "SOLVER.MAX_ITER", "1", "SOLVER.IMS_PER_BATCH", "1"]
    train += ["INPUT.SAMPLING_FRAME_NUM", "3", "DATALOADER.NUM_WORKERS", "0", *RGNN_NARROW]
    proc = run_cli("train_net.py", [*train, "OUTPUT_DIR", out, *SMALL])
    assert proc.returncode == 0, f"training the RGNN-VIS demo model failed:\n{proc.stderr[-4000:]}"
    return out


def test_demo_runs_an_rgnn_checkpoint_written_by_training(assets, rgnn_weights, demo):
    """Issue 23: the README's RGNN-VIS demo command on train_net.py's own output (config.yaml + model_final.pth)."""
    out_mp4, out_json = str(assets["tmp"] / "rgnn.mp4"), str(assets["tmp"] / "rgnn.json")
    weights = ["MODEL.WEIGHTS", str(rgnn_weights / "model_final.pth")]
    config = rgnn_weights / "config.yaml"
    proc = demo("--video-input", assets["video"], "--output", out_mp4, "--json", out_json, *weights, config=config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "processed 7 frames" in proc.stdout and _frames_of(out_mp4) == (7, 150)
    assert isinstance(json.load(open(out_json)), list)
    # the no-track hint names RGNN-VIS's own thresholds
    high = ["MODEL.RGNN.DETECTOR.SCORE_LOGIT_THRESH", "50.0"]
    proc = demo(
        "--video-input", assets["video"], "--max-frames", "2", "--json", out_json, *weights, *high, config=config
    )
    assert proc.returncode == 0 and "; 0 tracks" in proc.stdout, proc.stderr[-3000:]
    assert (
        "MODEL.RGNN.DETECTOR.SCORE_LOGIT_THRESH (now 50)" in proc.stderr and "MODEL.RGNN.INIT_THRESHOLD" in proc.stderr
    )


def test_tracks_beyond_max_tracks_are_reported(assets, demo):
    """``TEST.VIDEO.MAX_TRACKS`` caps the JSON (YouTube-VIS keeps 100 per video): what it dropped is said, naming
    the file and the key; the video still draws every track."""
    out_json = assets["tmp"] / "capped.json"
    video = ["--video-input", assets["video"], "--max-frames", "3", "--json", out_json]
    keep_all = ["MODEL.WEIGHTS", assets["weights"], *SMALL, *KEEP_MASKS, "MODEL.VIS_STG.INFERENCE.SCORE_THRESH", "0.0"]
    proc = demo(*video, *keep_all, "TEST.VIDEO.MAX_TRACKS", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    tracks = int(proc.stdout.split(" tracks")[0].rsplit("; ", 1)[1])
    assert tracks > 1  # the test needs more tracks than the cap
    with open(out_json) as f:
        assert len(json.load(f)) == 1
    warning = [line for line in proc.stderr.splitlines() if "TEST.VIDEO.MAX_TRACKS 1" in line]
    assert len(warning) == 1 and str(out_json) in warning[0] and f"dropped {tracks - 1}" in warning[0], proc.stderr
    proc = demo(*video, *keep_all)  # under the default cap: no warning
    assert proc.returncode == 0 and "MAX_TRACKS" not in proc.stderr
