"""YouTube-VIS metrics: one hand-built case per official rule, expected numbers derived from the rules."""

import json
import re

import numpy as np
import pycocotools.mask as mask_util
import pytest

from projects.evaluation import evaluate_ytvis, video_iou
from projects.evaluation.rle_check import check_rles, decode_counts_string
from projects.evaluation.ytvis_format import YTVISInputWarning
from tests.ytvis_eval_fixtures import RECALL_THRS, A, B, C, H, W, _cli, box, check, gt_json, pred, rle

THRS = np.linspace(0.5, 0.95, 10)  # COCO IoU thresholds


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
    with pytest.raises(ValueError, match=r"entry 0 \(3 entries, video 1 has 2 frames\).*--strict"):
        evaluate_ytvis(gt, [pred([A, A, A], 0.9)], strict=True)
    with pytest.raises(ValueError, match=r"category id\(s\) 7 .*--strict"):
        evaluate_ytvis(gt, [pred([A, A], 0.9, category_id=7)], strict=True)
    with pytest.raises(ValueError, match=r"entry 0 \(video_id 1\): score 'high' is a string, not a number"):
        evaluate_ytvis(gt, [pred([A, A], "high")])
    with pytest.raises(ValueError, match="mask size"):
        evaluate_ytvis(gt, [pred([box(0, 0, 5, 5, 50, 50)] * 2, 0.9)])
    with pytest.raises(ValueError, match="missing required key"):
        evaluate_ytvis({"videos": []}, [])
    with pytest.raises(ValueError, match="no 'annotations'"):
        evaluate_ytvis({k: v for k, v in gt.items() if k != "annotations"}, [])
    # no predictions at all: AP 0 where GT exists
    check(evaluate_ytvis(gt, []), AP=0, AR10=0)


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


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "No such file"),
        ("bad_json", "not valid JSON"),
        ("no_categories", "'categories'"),
        ("unknown_video", "video id(s) 5"),
        ("wrong_length", "refused by --strict"),
    ],
)
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
    proc = _cli(gt_file, tmp_path / "nope.json" if case == "missing" else res_file, "--strict")
    assert proc.returncode == 1 and proc.stdout == ""
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error:") and message in error


# --- inputs the official evaluation scores: same numbers, a warning naming file, entry and problem ----------


def test_segmentations_lists_pair_with_zip():
    gt = gt_json([{"masks": [A, A, B]}], length=3)
    # a short prediction: frames past its end are ignored on both sides (official zip), so IoU = 200/200
    with pytest.warns(YTVISInputWarning, match=r"entry 0 \(2 entries, video 1 has 3 frames\)"):
        check(evaluate_ytvis(gt, [pred([A, A], 0.9)]), AP=1, AR1=1)
    # padded with null it would miss frame 2's GT: IoU 200/300 passes thresholds 0.5 .. 0.65 only
    check(evaluate_ytvis(gt, [pred([A, A, None], 0.9)]), AP=np.mean(THRS <= 2 / 3))
    # a long prediction: the extra frame never enters the IoU
    with pytest.warns(YTVISInputWarning, match=r"entry 1 \(4 entries"):
        long = evaluate_ytvis(gt, [pred([C, C, C], 0.95), pred([A, A, B, C], 0.9)])
    check(long, AP=np.mean(np.where(RECALL_THRS <= 1.0, 0.5, 0)), AR1=0, AR10=1)
    # a short GT track pairs the same way
    with pytest.warns(YTVISInputWarning, match=r"ground truth .*annotations\[0\] \(2 entries"):
        gt_short = gt_json([{"masks": [A, A]}], length=3)
        check(evaluate_ytvis(gt_short, [pred([A, A, B], 0.9)]), AP=1)


def test_long_prediction_area_averages_all_its_frames():
    h = w = 400
    g, small = box(0, 0, 10, 10, h, w), box(300, 300, 310, 310, h, w)
    big = box(0, 0, 300, 300, h, w)  # 90000 px
    gt = gt_json([{"masks": [g, g]}], length=2, h=h, w=w)
    # FP of 100 px frames plus one extra 90000-px frame past the video: its area (official loadRes) averages
    # all its frames, (100 + 100 + 90000) / 3 = 30067 -> medium, so in the small range this unmatched FP is
    # ignored and small AP stays 1 although it outranks the TP
    with pytest.warns(YTVISInputWarning):
        m = evaluate_ytvis(gt, [pred([small, small, big], 0.95), pred([g, g], 0.9)])
    check(m, AP=0.5, APs=1, APm=-1)
    # trimmed to the video it is a small FP: small AP 0.5
    check(evaluate_ytvis(gt, [pred([small, small], 0.95), pred([g, g], 0.9)]), AP=0.5, APs=0.5)


def test_foreign_category_predictions_are_dropped():
    gt = gt_json([{"masks": [A, A]}])
    fp = pred([B, B], 0.95, category_id=7)
    with pytest.warns(
        YTVISInputWarning,
        match=r"results <in-memory results>: predictions with a category_id "
        r"that is not a ground-truth category .* dropped.*: entry 0 \(category_id 7\)",
    ):
        m = evaluate_ytvis(gt, [fp, pred([A, A], 0.9)])
    assert m == evaluate_ytvis(gt, [pred([A, A], 0.9)])
    check(m, AP=1)
    # dropped predictions still get their masks validated
    corrupt = {**fp, "segmentations": [{"size": [H, W], "counts": "0"}, None]}
    with pytest.raises(ValueError, match=r"entry 0: bad segmentation in frame 0"):
        evaluate_ytvis(gt, [corrupt])


def test_gt_annotation_id_zero_is_never_a_true_positive():
    gt = gt_json([{"masks": [A, A]}, {"masks": [B, B]}])
    gt["annotations"][0]["id"] = 0
    with pytest.warns(YTVISInputWarning, match=r"annotation id 0 .*: annotations\[0\]"):
        m = evaluate_ytvis(gt, [pred([A, A], 0.9), pred([B, B], 0.8)])
    # the perfect match on id 0 counts as FP, then a TP: precision 1/2 up to recall 1/2 (2 GT tracks)
    check(m, AP=np.mean(np.where(RECALL_THRS <= 0.5, 0.5, 0.0)), AR1=0, AR10=0.5)
    # the id-0 track is "taken" by the first match: a second prediction on it is an FP too
    with pytest.warns(YTVISInputWarning):
        m = evaluate_ytvis(gt, [pred([A, A], 0.9), pred([A, A], 0.85), pred([B, B], 0.8)])
    check(m, AP=np.mean(np.where(RECALL_THRS <= 0.5, 1 / 3, 0.0)))
    with pytest.raises(ValueError, match=r"annotations\[0\]: annotation id 0 .*--strict"):
        evaluate_ytvis(gt, [pred([B, B], 0.8)], strict=True)


def test_cli_warnings_and_strict(tmp_path):
    gt = gt_json([{"masks": [A, A]}])
    gt_file, res_file = tmp_path / "gt.json", tmp_path / "my_res.json"
    gt_file.write_text(json.dumps(gt))
    res_file.write_text(json.dumps([pred([B, B], 0.95, category_id=9), pred([A], 0.9)]))
    proc = _cli(gt_file, res_file)
    assert proc.returncode == 0, proc.stderr
    check(json.loads(proc.stdout), AP=1)
    warnings_ = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings_) == 2
    assert all("my_res.json" in line for line in warnings_)
    assert any("entry 0 (category_id 9)" in line for line in warnings_)
    assert any("entry 1 (1 entries, video 1 has 2 frames)" in line for line in warnings_)
    strict = _cli(gt_file, res_file, "--strict")
    assert strict.returncode == 1 and strict.stdout == ""
    assert strict.stderr.strip().splitlines()[-1].startswith("error:")


# --- corrupt RLEs are refused before pycocotools decodes them ----------------------------------------------


def _corrupt(kind):
    """A (H, W) RLE whose counts do not decode to exactly H*W run lengths."""
    good = rle(box(3, 0, 60, 40))["counts"]
    if kind == "truncated":  # cut after a character with the continuation bit: the string ends mid-count
        cut = next(i for i in range(len(good) - 1, 0, -1) if (ord(good[i - 1]) - 48) & 0x20)
        return {"size": [H, W], "counts": good[:cut]}
    if kind == "cut_short":  # cut between counts: decodes, but sums short of H*W
        cut = next(i for i in range(len(good) - 1, 0, -1) if not (ord(good[i - 1]) - 48) & 0x20)
        return {"size": [H, W], "counts": good[:cut]}
    if kind == "past_hw":  # the RLE of a (H, W + 1) mask claims to be (H, W)
        return {"size": [H, W], "counts": rle(np.ones((H, W + 1), np.uint8))["counts"]}
    if kind == "uncompressed_short":
        return {"size": [H, W], "counts": [10, 20, H * W - 31]}
    if kind == "non_ascii":
        return {"size": [H, W], "counts": good[:5] + "\u00e9\u4e2d" + good[5:]}
    if kind == "garbage":
        return {"size": [H, W], "counts": "\x01\x7f~~~~"}
    raise AssertionError(kind)


CORRUPT = {
    "truncated": "truncated",
    "cut_short": "not height*width = 100*100 = 10000",
    "past_hw": "sum to 10100",
    "uncompressed_short": "sum to 9999",
    "non_ascii": "non-ASCII",
    "garbage": "invalid character",
}


@pytest.mark.parametrize("side", ["gt", "results"])
@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_rle_is_refused(tmp_path, side, kind):
    gt = gt_json([{"masks": [A, A, A]}, {"masks": [B, B, B]}], length=3)
    results = [pred([A, A, A], 0.9), pred([B, B, B], 0.8)]
    target = gt["annotations"][1] if side == "gt" else results[1]
    target["segmentations"][2] = _corrupt(kind)
    gt_file, res_file = tmp_path / "gt.json", tmp_path / "res.json"
    gt_file.write_text(json.dumps(gt))
    res_file.write_text(json.dumps(results))
    where = r"ground truth .*gt\.json: annotations\[1\]" if side == "gt" else r"results .*res\.json: entry 1"
    with pytest.raises(ValueError, match=where + r": bad segmentation in frame 2: .*" + re.escape(CORRUPT[kind])):
        evaluate_ytvis(gt_file, res_file)
    if kind == "truncated":  # the CLI: exit 1 with the same one-line message, nothing on stdout
        proc = _cli(gt_file, res_file)
        assert proc.returncode == 1 and proc.stdout == ""
        assert re.search(where + ".*frame 2.*truncated", proc.stderr.strip().splitlines()[-1])


def _runs(mask):
    return _uncompressed(mask)["counts"]


def test_counts_string_decoder_matches_pycocotools():
    rng = np.random.default_rng(0)
    strings, expected = [], []
    for trial in range(200):
        h, w = rng.integers(1, 70, size=2)
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        if trial % 2:  # long runs: multi-chunk counts and negative deltas
            mask = np.zeros((h, w), np.uint8)
            mask[rng.integers(0, h) :, rng.integers(0, w) :] = 1
        counts = mask_util.encode(np.asfortranarray(mask))["counts"]
        assert decode_counts_string(counts).tolist() == _runs(mask)
        strings.append({"size": [int(h), int(w)], "counts": counts.decode() if trial % 3 else counts})
        expected.append(None)
    big = np.zeros((720, 1280), np.uint8)
    big[:, :1] = 1
    big[700:, 5:1200] = 1
    assert decode_counts_string(mask_util.encode(np.asfortranarray(big))["counts"]).tolist() == _runs(big)
    assert check_rles(strings) == expected  # one vectorised pass over all strings
    assert check_rles([{"size": [0, 0], "counts": ""}, {"size": [2, 2], "counts": [1, 3]}]) == [None, None]


def test_check_rles_messages():
    msgs = check_rles(
        [
            {"size": [2, 2], "counts": "13"},
            {"size": [2, 2], "counts": [1, -1, 4]},
            {"size": [2], "counts": "4"},
            {"size": [2, 2], "counts": "Yoooooooooo1"},
            {"size": [2, 2], "counts": "1\x7f"},
            {"counts": "4"},
            {"size": [2, 2], "counts": 4},
            {"size": [2, 2], "counts": "4"},
        ]
    )
    assert msgs[0] is None and msgs[7] is None
    assert "negative run -1" in msgs[1] and "'size' must be [height, width]" in msgs[2]
    assert "spans 12 characters" in msgs[3] and "invalid character '\\x7f' at position 1" in msgs[4]
    assert "needs 'size' and 'counts'" in msgs[5] and "string or a list of integers" in msgs[6]


def test_videos_of_more_than_255_frames():
    # pycocotools' area() of a list of >= 256 RLEs overflows under numpy 2: areas are taken in chunks
    g, p = box(0, 0, 4, 4, 8, 8), box(0, 0, 4, 2, 8, 8)
    gt = gt_json([{"masks": [g] * 300}], length=300, h=8, w=8)
    m = evaluate_ytvis(gt, [pred([p] * 300, 0.9)])  # IoU 8/16 = 0.5: only the 0.5 threshold passes
    check(m, AP=0.1, AP50=1, AP75=0)


def test_duplicate_gt_ids_score_the_last_annotation_per_id():
    gt = gt_json([{"masks": [A, A]}, {"masks": [B, B]}, {"masks": [C, C]}])
    gt["annotations"][2]["id"] = gt["annotations"][0]["id"]  # A's id reused by C: official scores C twice
    preds = [pred([A, A], 0.9), pred([C, C], 0.8), pred([B, B], 0.7), pred([C, C], 0.6)]
    with pytest.warns(YTVISInputWarning, match=r"annotations\[0\] \(id 1, replaced by annotations\[2\]\)"):
        m = evaluate_ytvis(gt, preds)
    # GT = {C, B, C}: FP (A), TP, TP, TP -> precision 0 at rank 1, then 2/3 and 3/4 (interpolated: 3/4)
    check(m, AP=0.75, AR1=0, AR10=1)
    with pytest.raises(ValueError, match=r"id used more than once.*--strict"):
        evaluate_ytvis(gt, preds, strict=True)
