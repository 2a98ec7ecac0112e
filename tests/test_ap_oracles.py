"""experiments/ap_oracles.py: each oracle row fixes exactly its kind of error."""

import numpy as np
import pycocotools.mask as mask_util
import pytest

from experiments.ap_oracles import oracle_results
from projects.evaluation.ytvis_eval import evaluate_ytvis

H = W = 20
FRAMES = 3


def _rle(x0, y0, size):
    m = np.zeros((H, W), dtype=np.uint8, order="F")
    m[y0 : y0 + size, x0 : x0 + size] = 1
    rle = mask_util.encode(m)
    return {"size": [H, W], "counts": rle["counts"].decode()}


OBJ = {1: [_rle(1, 1, 6)] * FRAMES, 2: [_rle(10, 10, 8)] * FRAMES}


def _gt():
    anns = []
    for i, (cat, segs) in enumerate(OBJ.items(), start=1):
        area = float(mask_util.area(segs[0]))
        anns.append({"id": i, "video_id": 1, "category_id": cat, "segmentations": segs, "areas": [area] * FRAMES,
                     "bboxes": [[0, 0, 1, 1]] * FRAMES, "iscrowd": 0})  # fmt: skip
    return {
        "videos": [
            {"id": 1, "height": H, "width": W, "length": FRAMES, "file_names": [f"v/{i}.jpg" for i in range(FRAMES)]}
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": anns,
    }


def _track(segs, cat, score):
    return {"video_id": 1, "category_id": cat, "score": score, "segmentations": segs}


def _ap(gt, rows):
    return evaluate_ytvis(gt, rows)["AP"]


def _rows(results):
    gt = _gt()
    return gt, {name: _ap(gt, rows) for name, rows in oracle_results(gt, results).items()}


def test_class_row_fixes_wrong_classes_only():
    _, ap = _rows([_track(OBJ[1], 2, 0.9), _track(OBJ[2], 2, 0.8)])
    assert ap["as is"] < 0.6 and ap["class"] == pytest.approx(1.0)
    assert ap["masks"] == pytest.approx(ap["as is"]) and ap["linking"] == pytest.approx(ap["as is"])


def test_masks_row_fixes_coarse_masks_only():
    coarse = [_rle(1, 1, 5)] * FRAMES  # IoU 25 / 36 with the object
    _, ap = _rows([_track(coarse, 1, 0.9), _track(OBJ[2], 2, 0.8)])
    assert ap["as is"] < 0.8 and ap["masks"] == pytest.approx(1.0) and ap["masks + class"] == pytest.approx(1.0)
    assert ap["class"] == pytest.approx(ap["as is"])


def test_linking_row_joins_a_broken_track():
    first, rest = OBJ[1][:1] + [None] * (FRAMES - 1), [None] + OBJ[1][1:]
    _, ap = _rows([_track(rest, 1, 0.9), _track(first, 1, 0.7), _track(OBJ[2], 2, 0.8)])
    assert ap["as is"] < 0.8 and ap["linking"] == pytest.approx(1.0)
