"""``experiments/track_diagnostics.py``: found / fragmentation / purity / false tracks on a hand-made video."""

import json

import numpy as np
import pycocotools.mask as mask_util
import pytest

from experiments.track_diagnostics import diagnose

H, W, T = 20, 30, 4


def _rle(x0, x1):
    m = np.zeros((H, W), dtype=np.uint8, order="F")
    m[5:15, x0:x1] = 1
    r = mask_util.encode(m)
    r["counts"] = r["counts"].decode()
    return r


def test_fragmented_and_impure_tracks_are_counted(tmp_path):
    obj = [_rle(2, 12), _rle(4, 14), _rle(6, 16), _rle(8, 18)]
    gt = {
        "videos": [{"id": 1, "height": H, "width": W, "length": T, "file_names": [f"{t}.jpg" for t in range(T)]}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0, "segmentations": obj, "areas": [100] * T}
        ],
    }
    results = [
        # frames 0-2 on the object, frame 3 on background: video IoU 0.75, purity 3/4
        {"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": obj[:3] + [_rle(20, 29)]},
        # the object's last frame under another id: one switch, two ids
        {"video_id": 1, "category_id": 2, "score": 0.8, "segmentations": [None, None, None, obj[3]]},
        # a false track scoring above the true one
        {"video_id": 1, "category_id": 1, "score": 0.95, "segmentations": [_rle(20, 29)] * T},
    ]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    r = diagnose(str(tmp_path / "gt.json"), str(tmp_path / "res.json"))
    assert r["found"] == 100.0 and r["found_class"] == 100.0
    assert r["ids_per_object"] == 2.0 and r["switches"] == 1.0 and r["covered"] == 100.0
    assert r["purity"] == pytest.approx(75.0)
    assert r["tracks"] == 3.0 and r["false"] == 2.0  # the 1-frame class-b fragment has video IoU 0.25
    assert r["true_score"] == pytest.approx(0.9) and r["false_above"] == 1.0
