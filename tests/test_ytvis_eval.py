"""YouTube-VIS metrics: one hand-built case per official rule, expected numbers derived from the rules."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest

from projects.evaluation import evaluate_ytvis, video_iou

REPO = Path(__file__).resolve().parents[1]
H = W = 100
THRS = np.linspace(0.5, 0.95, 10)  # COCO IoU thresholds
RECALL_THRS = np.linspace(0.0, 1.0, 101)


def check(metrics, **expected):
    """Compare metrics with hand-derived values (precision carries pycocotools' 1e-16 epsilon)."""
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key


def box(x0, y0, x1, y1, h=H, w=W):
    m = np.zeros((h, w), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def rle(mask):
    """Compressed RLE with str counts (``None`` stays ``None``; an all-zero mask gives an empty RLE)."""
    if mask is None:
        return None
    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode()}


def gt_json(tracks, length=2, h=H, w=W, videos=(1,), categories=None):
    """``tracks``: dicts with video_id (default 1), category_id (default 1), masks [array|None], iscrowd, areas."""
    anns = []
    for i, t in enumerate(tracks):
        ann = {"id": i + 1, "video_id": t.get("video_id", 1), "category_id": t.get("category_id", 1),
               "iscrowd": t.get("iscrowd", 0), "segmentations": [rle(m) for m in t["masks"]],
               "areas": t.get("areas", [None if m is None else int(m.sum()) for m in t["masks"]])}
        anns.append(ann)
    return {"videos": [{"id": v, "height": h, "width": w, "length": length,
                        "file_names": [f"{v}/{k:05d}.jpg" for k in range(length)]} for v in videos],
            "categories": [{"id": k, "name": n} for k, n in (categories or {1: "cat", 2: "dog"}).items()],
            "annotations": anns}


def pred(masks, score, category_id=1, video_id=1):
    return {"video_id": video_id, "category_id": category_id, "score": score,
            "segmentations": [rle(m) for m in masks]}


A, B, C = box(0, 0, 10, 10), box(20, 20, 30, 30), box(50, 50, 60, 60)  # disjoint 100-pixel squares


def test_perfect_prediction():
    gt = gt_json([{"masks": [A, B]}, {"masks": [C, None], "category_id": 2}])
    m = evaluate_ytvis(gt, [pred([A, B], 0.9), pred([C, None], 0.8, category_id=2)])
    check(m, AP=1, AP50=1, AP75=1, APs=1, APm=-1, APl=-1, AR1=1, AR10=1, AR100=1)  # no medium/large GT
    assert m["per_class"] == pytest.approx({"cat": 1.0, "dog": 1.0})


def test_video_iou_null_frames():
    p, g = [rle(A), rle(box(0, 0, 10, 5)), None, None], [rle(A), None, rle(box(5, 0, 15, 10)), None]
    # frame 0: I=U=100; frame 1: only P (50) -> U+=50; frame 2: only G (100) -> U+=100; frame 3: both null -> 0
    assert video_iou(p, g) == pytest.approx(100 / 250)
    assert video_iou([rle(A)], [rle(box(5, 0, 15, 10))]) == pytest.approx(50 / 150)
    assert video_iou([None], [None]) == 0.0


def test_null_frame_union_moves_iou_between_thresholds():
    g = box(0, 0, 5, 3)  # 15 pixels
    gt = gt_json([{"masks": [g, g, None, None]}], length=4)
    # the prediction also has 12 pixels in frame 2 where the GT is null: IoU = 30 / 42 = 0.714
    p = [g, g, box(40, 40, 44, 43), None]
    assert video_iou([rle(m) for m in p], gt["annotations"][0]["segmentations"]) == pytest.approx(30 / 42)
    m = evaluate_ytvis(gt, [pred(p, 0.9)])
    check(m, AP50=1, AP75=0, AP=np.mean(THRS <= 30 / 42))  # thresholds 0.5 .. 0.7 pass: AP = 5/10
    assert m["AP"] == pytest.approx(0.5)
    # without the extra frame the prediction is perfect
    check(evaluate_ytvis(gt, [pred([g, g, None, None], 0.9)]), AP75=1)
    # a GT frame the prediction misses adds the GT area: IoU = 30 / 45
    gt2 = gt_json([{"masks": [g, g, g]}], length=3)
    check(evaluate_ytvis(gt2, [pred([g, g, None], 0.9)]), AP=np.mean(THRS <= 30 / 45))


def test_area_ranges_use_mean_of_nonzero_frames():
    h = w = 400
    g = box(0, 0, 150, 150, h, w)  # 22500 px: medium (128² = 16384 .. 256² = 65536)
    empty = np.zeros((h, w), np.uint8)
    # frame 1 has an empty mask (area 0) and frame 2 is null: both excluded -> mean 22500 (medium), not
    # 11250 (small) as a mean including the zero would give
    gt = gt_json([{"masks": [g, empty, None], "areas": [22500, 0, None]}], length=3, h=h, w=w)
    good = pred([g, None, None], 0.9)
    fp = pred([box(200, 200, 350, 340, h, w), empty, None], 0.95)  # 21000 px, also medium despite the 0
    m = evaluate_ytvis(gt, [fp, good])
    # FP ranked first, then the TP: precision 1/2 at recall 1; the medium FP counts in the medium range
    check(m, AP=0.5, APm=0.5, APs=-1, APl=-1)
    # an unmatched small prediction is ignored in the medium range
    small_fp = pred([box(200, 200, 210, 210, h, w), empty, None], 0.95)
    m = evaluate_ytvis(gt, [small_fp, good])
    check(m, AP=0.5, APm=1)


def test_gt_area_comes_from_areas_field():
    # the official code reads the JSON's areas, not the masks: a small mask declared large counts as large
    gt = gt_json([{"masks": [A, A], "areas": [70000, 70000]}])
    m = evaluate_ytvis(gt, [pred([A, A], 0.9)])
    check(m, APl=1, APs=-1)
    del gt["annotations"][0]["areas"]  # no areas field: computed from the masks (100 px: small)
    m = evaluate_ytvis(gt, [pred([A, A], 0.9)])
    check(m, APs=1, APl=-1)


def test_crowd_gt_is_ignored():
    gt = gt_json([{"masks": [A, A]}, {"masks": [B, B], "iscrowd": 1}])
    # a prediction on the crowd track is neither TP nor FP
    m = evaluate_ytvis(gt, [pred([B, B], 0.95), pred([A, A], 0.9)])
    check(m, AP=1, AR1=0, AR10=1)  # the top-1 prediction only hits the crowd
    # several predictions may hit the same crowd track
    m = evaluate_ytvis(gt, [pred([B, B], 0.95), pred([B, B], 0.94), pred([A, A], 0.9)])
    check(m, AP=1)
    # crowd IoU is the same video IoU (not COCO's |P∩G|/|P|): a quarter of the crowd region -> IoU .25 -> FP
    m = evaluate_ytvis(gt, [pred([box(20, 20, 25, 25)] * 2, 0.95), pred([A, A], 0.9)])
    check(m, AP=0.5)


def test_max_dets_per_video_and_category():
    gt = gt_json([{"masks": [A, A]}, {"masks": [B, B]}])
    m = evaluate_ytvis(gt, [pred([A, A], 0.9), pred([B, B], 0.8)])
    check(m, AR1=0.5, AR10=1, AP=1)
    # maxDets counts per category: one track per category -> AR1 = 1
    gt = gt_json([{"masks": [A, A]}, {"masks": [B, B], "category_id": 2}])
    m = evaluate_ytvis(gt, [pred([A, A], 0.9), pred([B, B], 0.8, category_id=2)])
    check(m, AR1=1)


def test_predictions_cut_to_100_per_video_and_category():
    gt = gt_json([{"masks": [A, A]}])
    fps = [pred([C, C], 0.5 + i / 1000) for i in range(100)]
    m = evaluate_ytvis(gt, fps + [pred([A, A], 0.1)])  # the match is the 101st by score
    check(m, AR100=0, AP=0)
    m = evaluate_ytvis(gt, fps[:99] + [pred([A, A], 0.1)])
    check(m, AR100=1, AP=1 / 100)  # precision 1/100 at recall 1


def test_class_without_gt_is_excluded_from_mean():
    gt = gt_json([{"masks": [A, A]}])
    m = evaluate_ytvis(gt, [pred([A, A], 0.9), pred([B, B], 0.95, category_id=2)])
    check(m, AP=1)
    assert m["per_class"] == pytest.approx({"cat": 1.0, "dog": -1.0})


def test_category_mismatch_does_not_match():
    gt = gt_json([{"masks": [A, A]}])
    m = evaluate_ytvis(gt, [pred([A, A], 0.9, category_id=2)])
    check(m, AP=0, AR10=0)
    assert m["per_class"] == {"cat": 0.0, "dog": -1.0}


def test_score_ordering_and_stable_ties():
    gt = gt_json([{"masks": [A, A]}, {"masks": [B, B]}])
    fp, d1, d2 = pred([C, C], 0.9), pred([A, A], 0.8), pred([B, B], 0.7)
    # FP, TP, TP: interpolated precision 2/3 at every recall
    check(evaluate_ytvis(gt, [d1, d2, fp]), AP=2 / 3)
    check(evaluate_ytvis(gt, [d1, d2, {**fp, "score": 0.6}]), AP=1)
    # equal scores keep the results order (mergesort): TP, FP, TP -> precision 1 up to recall .5, then 2/3
    tie = {**fp, "score": 0.8}
    expected = np.mean(np.where(RECALL_THRS <= 0.5, 1.0, 2 / 3))
    check(evaluate_ytvis(gt, [d1, tie, d2]), AP=expected)
    check(evaluate_ytvis(gt, [tie, d1, d2]), AP=2 / 3)


def _uncompressed(mask):
    flat = mask.flatten(order="F")
    starts = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], starts, [flat.size]])).tolist()
    return {"size": list(mask.shape), "counts": ([0] + counts) if flat[0] else counts}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' decode under numpy 2
def test_gt_formats_give_same_result():
    poly = [[10.0, 10.0, 40.0, 12.0, 35.0, 45.0, 8.0, 30.0]]
    mask = mask_util.decode(mask_util.merge(mask_util.frPyObjects(poly, H, W)))
    assert mask_util.encode(np.asfortranarray(mask)) == mask_util.frPyObjects(_uncompressed(mask), H, W)
    p0, p2 = mask, box(10, 10, 38, 40)
    preds = [pred([p0, None, p2], 0.9)]
    iou = ((p0 & mask).sum() + (p2 & mask).sum()) / ((p0 | mask).sum() + (p2 | mask).sum())
    results = []
    for segm in (poly, _uncompressed(mask), rle(mask)):
        gt = gt_json([{"masks": [None, None, None]}], length=3)
        gt["annotations"][0]["segmentations"] = [segm, None, segm]
        del gt["annotations"][0]["areas"]
        results.append(evaluate_ytvis(gt, preds))
    assert results[0] == results[1] == results[2]
    check(results[0], AP=np.mean(THRS <= iou))
    assert 0 < results[0]["AP"] < 1


def test_errors(tmp_path):
    gt = gt_json([{"masks": [A, A]}])
    res_file = tmp_path / "my_results.json"
    res_file.write_text(json.dumps([pred([A, A], 0.9, video_id=99)]))
    with pytest.raises(ValueError, match=r"video id\(s\) 99 .*") as e:
        evaluate_ytvis(gt, res_file)
    assert "my_results.json" in str(e.value)
    with pytest.raises(ValueError, match="length 3 but video 1 has 2 frames"):
        evaluate_ytvis(gt, [pred([A, A, A], 0.9)])
    with pytest.raises(ValueError, match=r"category id\(s\) 7"):
        evaluate_ytvis(gt, [pred([A, A], 0.9, category_id=7)])
    with pytest.raises(ValueError, match="mask size"):
        evaluate_ytvis(gt, [pred([box(0, 0, 5, 5, 50, 50)] * 2, 0.9)])
    with pytest.raises(ValueError, match="missing required key"):
        evaluate_ytvis({"videos": []}, [])
    with pytest.raises(ValueError, match="no 'annotations'"):
        evaluate_ytvis({k: v for k, v in gt.items() if k != "annotations"}, [])
    # no predictions at all: AP 0 where GT exists
    check(evaluate_ytvis(gt, []), AP=0, AR10=0)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "projects.evaluation", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli(tmp_path):
    gt_file, res_file = tmp_path / "gt.json", tmp_path / "res.json"
    gt_file.write_text(json.dumps(gt_json([{"masks": [A, A]}, {"masks": [B, B]}])))
    res_file.write_text(json.dumps([pred([A, A], 0.9), pred([C, C], 0.95)]))
    proc = _cli(gt_file, res_file, "--per-class")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert list(out) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "per_class"]
    # FP then TP, 2 GT: precision 1/2 up to recall .5, nothing beyond
    assert out["AP"] == pytest.approx(np.mean(np.where(RECALL_THRS <= 0.5, 0.5, 0.0)), abs=1e-6)
    check(out, AR1=0, AR10=0.5, APm=-1)
    assert out["per_class"] == {"cat": out["AP"], "dog": -1}
    assert "per_class" not in json.loads(_cli(gt_file, res_file).stdout)


@pytest.mark.parametrize("case, message", [
    ("missing", "No such file"), ("bad_json", "not valid JSON"), ("no_categories", "'categories'"),
    ("unknown_video", "video id(s) 5"), ("wrong_length", "has 2 frames")])
def test_cli_errors(tmp_path, case, message):
    gt = gt_json([{"masks": [A, A]}])
    results = [pred([A, A], 0.9)]
    gt_file, res_file = tmp_path / "gt.json", tmp_path / "res.json"
    if case == "no_categories":
        del gt["categories"]
    if case == "unknown_video":
        results[0]["video_id"] = 5
    if case == "wrong_length":
        results[0]["segmentations"].append(None)
    gt_file.write_text(json.dumps(gt))
    res_file.write_text("{not json" if case == "bad_json" else json.dumps(results))
    proc = _cli(gt_file, tmp_path / "nope.json" if case == "missing" else res_file)
    assert proc.returncode == 1 and proc.stdout == ""
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error:") and message in error
