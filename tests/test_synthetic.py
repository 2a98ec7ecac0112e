"""Tests of the synthetic YouTube-VIS generator (projects/data/synthetic.py) on tiny datasets."""

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

from projects.data.synthetic import (
    MIN_AREA,
    SYNTHETIC_CATEGORIES,
    ensure_synthetic_vis,
    generate_synthetic_vis,
)
from projects.data.synthetic_preview import render_preview

# pycocotools' decode warns under numpy 2 (its own code, harmless)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

REPO = Path(__file__).resolve().parents[1]
V, T, H, W = 6, 8, 64, 96


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    json_path = generate_synthetic_vis(out, V, T, H, W, seed=0, split_name="train")
    with open(json_path) as f:
        data = json.load(f)
    return Path(json_path), out / "train" / "JPEGImages", data


def _decode(rle):
    return mask_util.decode(mask_util.frPyObjects(rle, *rle["size"])).astype(bool)


def _tracks_by_video(data):
    out = {}
    for a in data["annotations"]:
        out.setdefault(a["video_id"], []).append(a)
    return out


def test_schema(dataset):
    json_path, image_root, data = dataset
    assert json_path == json_path.parent / "train.json"
    assert {"info", "licenses", "videos", "annotations", "categories"} <= set(data)
    assert [c["id"] for c in data["categories"]] == list(range(1, len(SYNTHETIC_CATEGORIES) + 1))
    assert len(data["categories"]) >= 6 and all({"id", "name", "supercategory"} <= set(c) for c in data["categories"])
    assert [v["id"] for v in data["videos"]] == list(range(1, V + 1))
    for v in data["videos"]:
        assert (v["height"], v["width"], v["length"]) == (H, W, T)
        assert len(v["file_names"]) == T and v["file_names"][0].endswith("/00000.jpg")
        assert all((image_root / f).is_file() for f in v["file_names"])
    ids = [a["id"] for a in data["annotations"]]
    assert min(ids) >= 1 and len(set(ids)) == len(ids)
    cat_ids = {c["id"] for c in data["categories"]}
    for a in data["annotations"]:
        assert a["category_id"] in cat_ids and a["iscrowd"] == 0
        assert (a["height"], a["width"], a["length"]) == (H, W, T)
        assert len(a["segmentations"]) == len(a["areas"]) == len(a["bboxes"]) == T
        nulls = [s is None for s in a["segmentations"]]
        assert nulls == [x is None for x in a["areas"]] == [b is None for b in a["bboxes"]]
        assert not all(nulls)
        for s in a["segmentations"]:
            if s is not None:  # uncompressed RLE, as in the official train.json
                assert s["size"] == [H, W] and isinstance(s["counts"], list) and sum(s["counts"]) == H * W


def test_masks_match_areas_and_boxes(dataset):
    _, _, data = dataset
    for a in data["annotations"]:
        for s, area, box in zip(a["segmentations"], a["areas"], a["bboxes"]):
            if s is None:
                continue
            m = _decode(s)
            assert m.sum() == area >= MIN_AREA
            ys, xs = np.nonzero(m)
            assert box == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            rle = mask_util.frPyObjects(s, H, W)
            assert mask_util.area(rle) == area and np.allclose(mask_util.toBbox(rle), box)


def test_visible_masks_do_not_overlap(dataset):
    _, _, data = dataset
    for tracks in _tracks_by_video(data).values():
        for t in range(T):
            masks = [_decode(a["segmentations"][t]) for a in tracks if a["segmentations"][t] is not None]
            if masks:
                assert np.sum(masks, axis=0).max() <= 1


def test_instances_per_video(dataset):
    _, _, data = dataset
    counts = Counter(a["video_id"] for a in data["annotations"])
    assert set(counts) == {v["id"] for v in data["videos"]}
    assert all(1 <= n <= 6 for n in counts.values())


def test_scene_events(dataset):
    """Same-class instances, temporary full occlusion and tracks entering/leaving at the border all occur."""
    _, _, data = dataset

    def at_border(b):
        return b[0] == 0 or b[1] == 0 or b[0] + b[2] == W or b[1] + b[3] == H

    same_class = mid_null = enters = leaves = 0
    for tracks in _tracks_by_video(data).values():
        cats = [a["category_id"] for a in tracks]
        same_class += len(cats) > len(set(cats))
        for a in tracks:
            seen = [t for t, s in enumerate(a["segmentations"]) if s is not None]
            mid_null += len(seen) < seen[-1] - seen[0] + 1
            enters += seen[0] > 0 and at_border(a["bboxes"][seen[0]])
            leaves += seen[-1] < T - 1 and at_border(a["bboxes"][seen[-1]])
    assert same_class and mid_null and enters and leaves


def test_deterministic(dataset, tmp_path):
    json_path, _, _ = dataset
    again = generate_synthetic_vis(tmp_path / "a", V, T, H, W, seed=0, split_name="train")
    assert Path(again).read_bytes() == json_path.read_bytes()
    other = generate_synthetic_vis(tmp_path / "b", V, T, H, W, seed=1, split_name="train")
    assert Path(other).read_bytes() != json_path.read_bytes()


def test_images_are_jpegs(dataset):
    _, image_root, data = dataset
    for v in data["videos"]:
        for f in v["file_names"][:: T - 1]:
            assert (image_root / f).read_bytes()[:2] == b"\xff\xd8"
            img = cv2.imread(str(image_root / f))
            assert img.shape == (H, W, 3) and img.std() > 5


def test_cli_with_mp4(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "projects.data.synthetic",
        "--out",
        str(tmp_path),
        "--videos",
        "2",
        "--frames",
        "5",
        "--height",
        "48",
        "--width",
        "64",
        "--seed",
        "3",
        "--split",
        "valid",
        "--mp4",
    ]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert str(tmp_path / "valid.json") in res.stdout
    data = json.loads((tmp_path / "valid.json").read_text())
    assert len(data["videos"]) == 2 and data["annotations"]
    for name in ("vid_0001", "vid_0002"):
        cap = cv2.VideoCapture(str(tmp_path / "valid" / "videos" / f"{name}.mp4"))
        assert cap.isOpened()
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        cap.release()
        assert len(frames) == 5 and frames[0].shape == (48, 64, 3)


def test_ensure_generates_once_and_atomically(tmp_path):
    kw = dict(num_videos=2, num_frames=4, height=48, width=64)
    results, errors = [], []

    def worker():
        try:
            results.append(ensure_synthetic_vis(tmp_path, "val", **kw))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]  # separate flocks exclude each other
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len(set(results)) == 1
    json_file, image_root = results[0]
    assert (json_file, image_root) == (str(tmp_path / "valid.json"), str(tmp_path / "valid" / "JPEGImages"))
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
    data = json.loads(Path(json_file).read_text())
    assert len(data["videos"]) == 2 and data["annotations"]  # the val split is annotated too
    mtime = os.stat(json_file).st_mtime_ns
    assert ensure_synthetic_vis(tmp_path, "valid", **kw) == results[0]
    assert os.stat(json_file).st_mtime_ns == mtime  # up to date: not regenerated
    ensure_synthetic_vis(tmp_path, "val", **{**kw, "num_videos": 3})  # other parameters: regenerated
    assert len(json.loads(Path(json_file).read_text())["videos"]) == 3
    assert not (Path(image_root) / "vid_0004").exists()
    with pytest.raises(KeyError):
        ensure_synthetic_vis(tmp_path, "test")


def test_render_preview(dataset, tmp_path):
    json_path, image_root, _ = dataset
    out = render_preview(str(json_path), str(image_root), str(tmp_path / "p.png"), num_frames=3)
    img = cv2.imread(out)
    assert img is not None and img.shape[1] > 3 * W and img.shape[0] > 2 * H


def test_train_large_extends_train(tmp_path):
    """``train_large`` is ``train``'s generator and seed with more videos: its first videos are ``train``'s, byte
    for byte; both are registered as detectron2 datasets."""
    from detectron2.data import MetadataCatalog

    import projects.data  # noqa: F401  (registers the builtin datasets)
    from projects.data.synthetic import DEFAULT_SPLITS

    assert DEFAULT_SPLITS["train_large"][2] == DEFAULT_SPLITS["train"][2]
    assert DEFAULT_SPLITS["train_large"][1] > DEFAULT_SPLITS["train"][1]
    kw = dict(num_frames=3, height=48, width=64)
    small_json, small_root = ensure_synthetic_vis(tmp_path / "a", "train", num_videos=2, **kw)
    large_json, large_root = ensure_synthetic_vis(tmp_path / "b", "train_large", num_videos=3, **kw)
    small, large = json.loads(Path(small_json).read_text()), json.loads(Path(large_json).read_text())
    assert len(large["videos"]) == 3 and large["videos"][:2] == small["videos"]
    assert [a for a in large["annotations"] if a["video_id"] in (1, 2)] == small["annotations"]
    for name in small["videos"][1]["file_names"]:
        assert (Path(large_root) / name).read_bytes() == (Path(small_root) / name).read_bytes()
    meta = MetadataCatalog.get("synthetic_vis_train_large")
    assert meta.json_file.endswith("train_large.json") and meta.evaluator_type == "ytvis"
