"""The results viewer (python -m projects.visualize) and the synthetic preview on a tiny generated set: output
files with the right frame count and size, predicted pixels in their track's colour, polygon GT, one-line errors."""

import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from projects.data.synthetic import generate_synthetic_vis
from projects.data.synthetic_preview import render_preview
from projects.utils.masks import decode_mask, encode_mask
from projects.visualize import load_dataset, prediction_tracks, render_frames, track_color
from projects.visualize.__main__ import main

pytest.importorskip("imageio_ffmpeg")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

V, T, H, W = 2, 5, 193, 283  # odd sizes: the mp4 writer pads them by one pixel
HEADER = 16


def _polygons(mask):
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Synthetic GT (uncompressed RLE), the same GT as polygons, and results (compressed RLE) from the GT."""
    tmp = tmp_path_factory.mktemp("viewer")
    gt_json = generate_synthetic_vis(tmp, V, T, H, W, seed=5, split_name="val")
    root = str(tmp / "val" / "JPEGImages")
    gt = json.load(open(gt_json))
    results = []
    for k, a in enumerate(gt["annotations"]):
        segms = [None if s is None else encode_mask(decode_mask(s, H, W)) for s in a["segmentations"]]
        results.append({"video_id": a["video_id"], "category_id": a["category_id"], "score": 0.9 - 0.1 * k})
        results[-1]["segmentations"] = segms
    res_json = tmp / "results.json"
    json.dump(results, open(res_json, "w"))
    poly = dict(gt)
    poly["annotations"] = [
        dict(a, segmentations=[None if s is None else _polygons(decode_mask(s, H, W)) for s in a["segmentations"]])
        for a in gt["annotations"]
    ]
    poly_json = tmp / "poly.json"
    json.dump(poly, open(poly_json, "w"))
    return {"gt": gt_json, "poly": str(poly_json), "root": root, "results": str(res_json), "tmp": tmp}


def _blend(image_rgb, color):
    return 0.5 * image_rgb.astype(float) + 0.5 * 255 * np.asarray(color)


def _assert_coloured(panel, image, mask, color, other):
    """Most inner pixels of the mask are the image blended with ``color`` (none with ``other``); the rest are
    the label's text."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert inner.sum() >= 10
    err = np.abs(panel[inner].astype(float) - _blend(image, color)[inner]).max(axis=1)
    assert np.mean(err <= 3) >= 0.4, np.mean(err <= 3)
    if other is not None:
        err_other = np.abs(panel[inner].astype(float) - _blend(image, other)[inner]).max(axis=1)
        assert np.mean(err_other <= 3) <= 0.05


def _largest_visible(video, tracks):
    """(frame, track) of the largest mask of ``tracks`` in ``video`` (its label covers the smallest share)."""
    areas = [
        (decode_mask(tr.segmentations[t], H, W).sum(), t, k)
        for t in range(len(video.frames))
        for k, tr in enumerate(tracks)
        if tr.segmentations[t] is not None
    ]
    _, t, k = max(areas)
    return t, tracks[k]


def test_cli_writes_mp4_gif_png_with_gt(data, tmp_path, capsys):
    out = tmp_path / "out"
    args = [data["results"], "--dataset", f"{data['gt']}:{data['root']}", "--out", str(out), "--gt"]
    assert main(args + ["--format", "mp4", "gif", "png", "--sheet-frames", "3"]) == 0
    printed = capsys.readouterr().out
    from projects.utils.video_io import count_frames

    panel_w = 2 * W + 4
    for v in range(1, V + 1):
        base = out / f"vid_{v:04d}"
        assert f"video {v} (" in printed
        n, size = count_frames(f"{base}.mp4")
        assert (n, size) == (T, (HEADER + H + 1, panel_w))  # odd height padded by one row for H.264
        gif = Image.open(f"{base}.gif")
        assert (gif.n_frames, gif.size) == (T, (panel_w, HEADER + H))
        sheet = cv2.imread(f"{base}.png")
        assert sheet.shape == (2 * (HEADER + H) + 4, 2 * panel_w + 4, 3)  # 3 frames in 2 columns


def test_predicted_pixels_have_their_track_colour(data, tmp_path):
    json_file = data["gt"]
    dataset, videos = load_dataset(json_file, data["root"])
    preds = prediction_tracks(data["results"], dataset, json_file)
    video = videos[1]
    video.predictions = preds[1]
    assert [p.track_id for p in video.predictions] == list(range(1, len(video.predictions) + 1))  # rank in file
    frames = list(render_frames(video, score_thresh=0.0))
    assert len(frames) == T and frames[0].shape == (HEADER + H, W, 3)
    t, track = _largest_visible(video, video.predictions)
    image = cv2.imread(video.frames[t])[:, :, ::-1]
    mask = decode_mask(track.segmentations[t], H, W)
    others = [p for p in video.predictions if p is not track]
    overlap = np.zeros_like(mask)
    for p in others:
        if p.segmentations[t] is not None and p.score > track.score:  # drawn over it
            overlap |= decode_mask(p.segmentations[t], H, W)
    colors = track_color(track.track_id), track_color(track.track_id + 1)
    _assert_coloured(frames[t][HEADER:], image, mask & ~overlap, *colors)
    # a threshold above the track's score hides it: those pixels keep the frame's colour
    hidden = list(render_frames(video, score_thresh=track.score + 1e-6))[t][HEADER:]
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~overlap
    assert np.median(np.abs(hidden[inner].astype(float) - image[inner]).max(axis=1)) <= 2


def test_polygon_ground_truth_is_drawn_in_its_track_colour(data, tmp_path, capsys):
    out = tmp_path / "poly"
    args = [data["results"], "--dataset", f"{data['poly']}:{data['root']}", "--out", str(out), "--gt"]
    assert main(args + ["--videos", "2", "--format", "png", "--sheet-frames", str(T), "--sheet-cols", "1"]) == 0
    sheet = cv2.imread(str(out / "vid_0002.png"))[:, :, ::-1]
    poly = json.load(open(data["poly"]))
    _, videos = load_dataset(data["poly"], data["root"])
    anns = [a for a in poly["annotations"] if a["video_id"] == 2]
    _, t, k = max(
        (decode_mask(a["segmentations"][t], H, W).sum(), t, k)
        for t in range(T)
        for k, a in enumerate(anns)
        if a["segmentations"][t]
    )
    a = anns[k]
    others = [decode_mask(b["segmentations"][t], H, W) for j, b in enumerate(anns) if j > k and b["segmentations"][t]]
    mask = decode_mask(a["segmentations"][t], H, W) & ~np.any(others or [np.zeros((H, W), bool)], axis=0)
    y0, x0 = t * (HEADER + H + 4) + HEADER, W + 4  # row t, GT panel right of the predictions
    gt_panel = sheet[y0 : y0 + H, x0 : x0 + W]
    image = cv2.imread(videos[2].frames[t])[:, :, ::-1]
    _assert_coloured(gt_panel, image, mask, track_color(k + 1), None)


def test_preview_draws_polygon_ground_truth(data, tmp_path):
    """Before: TypeError (the preview indexed a polygon list as an RLE dict)."""
    out = render_preview(data["poly"], data["root"], str(tmp_path / "p.png"), num_frames=3, scale=1.0)
    img = cv2.imread(out)
    assert img.shape == (2 * H + 4, 3 * W + 8, 3)


def _error(capsys, args):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


def test_bad_input_is_one_line_naming_the_file(data, tmp_path, capsys):
    ds = ["--dataset", f"{data['gt']}:{data['root']}", "--out", str(tmp_path / "o"), "--format", "png"]
    results = json.load(open(data["results"]))
    unknown = tmp_path / "unknown.json"
    json.dump(results + [dict(results[0], video_id=77)], open(unknown, "w"))
    line = _error(capsys, [str(unknown)] + ds)
    assert str(unknown) in line and "77" in line
    corrupt = tmp_path / "corrupt.json"
    bad = [dict(r) for r in results]
    t = next(i for i, s in enumerate(bad[0]["segmentations"]) if s)
    bad[0]["segmentations"] = list(bad[0]["segmentations"])
    bad[0]["segmentations"][t] = {"size": [H, W], "counts": "0" + "\x7f"}
    json.dump(bad, open(corrupt, "w"))
    line = _error(capsys, [str(corrupt)] + ds)
    assert str(corrupt) in line and f"frame {t}" in line
    gt = json.load(open(data["gt"]))
    gt["videos"][0]["file_names"][2] = "vid_0001/missing.jpg"
    gt_json = tmp_path / "gt_missing.json"
    json.dump(gt, open(gt_json, "w"))
    line = _error(capsys, [data["results"], "--dataset", f"{gt_json}:{data['root']}", "--out", str(tmp_path / "m")])
    assert os.path.join(data["root"], "vid_0001/missing.jpg") in line
    line = _error(capsys, [data["results"]] + ds + ["--videos", "9"])
    assert data["gt"] in line and "9" in line
    line = _error(capsys, [data["results"], "--dataset", "no_such_dataset", "--out", str(tmp_path / "n")])
    assert "no_such_dataset" in line


def test_dataset_by_registered_name_and_name_equals_spec(data):
    from projects.data import register_json_dataset
    from projects.visualize import resolve_dataset

    register_json_dataset("viewer_test_val", data["gt"], data["root"])
    assert resolve_dataset("viewer_test_val") == (data["gt"], data["root"])
    assert resolve_dataset(f"x={data['gt']}:{data['root']}") == (data["gt"], data["root"])


def test_all_tracks_below_threshold_is_a_warning_with_the_best_score(data, tmp_path, capsys):
    args = [data["results"], "--dataset", f"{data['gt']}:{data['root']}", "--out", str(tmp_path), "--videos", "1"]
    assert main(args + ["--format", "png", "--sheet-frames", "1", "--score-thresh", "0.95"]) == 0
    err = capsys.readouterr().err
    assert "warning: video 1: all" in err and "best 0.900" in err


def test_gt_without_annotations_is_an_error(data, tmp_path, capsys):
    gt = json.load(open(data["gt"]))
    del gt["annotations"]
    bare = tmp_path / "valid.json"
    json.dump(gt, open(bare, "w"))
    line = _error(capsys, [data["results"], "--dataset", f"{bare}:{data['root']}", "--out", str(tmp_path), "--gt"])
    assert str(bare) in line and "annotations" in line
