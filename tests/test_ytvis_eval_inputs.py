"""Malformed and suspicious inputs of the YouTube-VIS evaluation (``python -m projects.evaluation``): one clear
line naming the file, the entry and the problem; scored like the official code where it scores them."""

import json
import re
import resource
import subprocess
import sys
import warnings

import numpy as np
import pytest

from projects.evaluation import evaluate_ytvis
from projects.evaluation.ytvis_format import YTVISInputWarning
from tests.ytvis_eval_fixtures import RECALL_THRS, REPO, A, B, C, _cli, check, gt_json, pred, rle


def _files(tmp_path, gt, results):
    gt_file, res_file = tmp_path / "gt.json", tmp_path / "my_res.json"
    gt_file.write_text(json.dumps(gt))
    res_file.write_text(json.dumps(results))  # NaN / Infinity as Python's json writes (and reads) them
    return gt_file, res_file


def _one_error_line(proc):
    """The CLI refused the input: exit 1, nothing on stdout, exactly one line on stderr; return it."""
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def _two_videos():
    return gt_json([{"masks": [A, A]}, {"masks": [B, B], "video_id": 2}], videos=(1, 2))


# --- scores ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "score, problem",
    [
        (float("nan"), "score NaN is not a finite number"),
        (float("inf"), "score Infinity is not a finite number"),
        (float("-inf"), "score -Infinity is not a finite number"),
        ("0.9", "score '0.9' is a string, not a number"),
        (True, "score true is a boolean, not a number"),
        (None, "score is null, not a number"),
    ],
)
def test_cli_refuses_non_finite_and_non_numeric_scores(tmp_path, score, problem):
    results = [pred([A, A], 0.9), pred([B, B], score, video_id=2), pred([C, C], score)]
    line = _one_error_line(_cli(*_files(tmp_path, _two_videos(), results)))
    # the first bad entry (index and video_id), the file, the problem, and how many entries have one
    assert f"my_res.json: entry 1 (video_id 2): {problem} (2 entries with a bad score)" in line


def test_bad_score_is_refused_in_a_dropped_prediction_too():
    with pytest.raises(ValueError, match=r"entry 0 \(video_id 1\): score NaN is not a finite number"):
        evaluate_ytvis(_two_videos(), [pred([A, A], float("nan"), category_id=9)])


# --- exact duplicates ------------------------------------------------------------------------------------


def test_exact_duplicates_are_scored_officially_with_a_warning(tmp_path):
    gt = _two_videos()
    gt["annotations"][1]["video_id"] = 1  # both tracks in video 1
    results = [pred([A, A], 0.9), pred([A, A], 0.9), pred([B, B], 0.8), pred([B, B], 0.8), pred([B, B], 0.7)]
    with pytest.warns(YTVISInputWarning) as caught:
        m = evaluate_ytvis(gt, results)
    # TP, FP (the repeat), TP, FP, FP: precision 1 up to recall 1/2, 2/3 at recall 1 (as the official code)
    check(m, AP=np.mean(np.where(RECALL_THRS <= 0.5, 1.0, 2 / 3)), AR1=0.5, AR10=1)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "2 exact duplicate prediction(s)" in message  # entries 1 and 3; entry 4 has another score
    assert "e.g. entry 1 repeats entry 0 (video_id 1, category_id 1, score 0.9)" in message
    with pytest.raises(ValueError, match=r"2 exact duplicate .*entry 1 repeats entry 0.*refused by --strict"):
        evaluate_ytvis(gt, results, strict=True)
    # same masks and score in another category, video or with another score: not duplicates
    distinct = [pred([A, A], 0.9), pred([A, A], 0.9, category_id=2), pred([A, A], 0.8), pred([A, A], 0.9, video_id=2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", YTVISInputWarning)
        evaluate_ytvis(_two_videos(), distinct)

    gt_file, res_file = _files(tmp_path, gt, results)
    proc = _cli(gt_file, res_file)
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "my_res.json: 2 exact duplicate prediction(s)" in warned[0]
    line = _one_error_line(_cli(gt_file, res_file, "--strict"))
    assert "my_res.json: 2 exact duplicate" in line and "refused by --strict" in line


# --- ids of the wrong type ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "video_id, problem",
    [
        ("1", "video_id '1' is a string"),
        (None, "video_id is null"),
        ([1], "video_id [1] is a list"),
        (1.5, "video_id 1.5 is a float"),
    ],
)
def test_cli_says_when_a_video_id_has_the_wrong_type(tmp_path, video_id, problem):
    results = [pred([A, A], 0.9), pred([B, B], 0.8)]
    results[1]["video_id"] = video_id
    line = _one_error_line(_cli(*_files(tmp_path, _two_videos(), results)))
    assert f"my_res.json: entry 1: {problem}; the ground truth " in line and "gt.json uses integers" in line
    assert "not in the ground truth" not in line


@pytest.mark.parametrize("key, value", [("video_id", True), ("video_id", 1.0), ("category_id", True)])
def test_boolean_or_float_ids_are_taken_as_integers_with_a_warning(key, value):
    gt = _two_videos()
    good = [pred([A, A], 0.9), pred([B, B], 0.8, video_id=2)]
    bad = [dict(good[0], **{key: value}), good[1]]
    with pytest.warns(YTVISInputWarning, match=rf"taken for the integer .*: entry 0 \({key} {json.dumps(value)}\)"):
        assert evaluate_ytvis(gt, bad) == evaluate_ytvis(gt, good)  # as the official code: equal in Python
    with pytest.raises(ValueError, match=rf"entry 0 \({key} .*refused by --strict"):
        evaluate_ytvis(gt, bad, strict=True)


@pytest.mark.parametrize("category_id, kind", [("1", "'1' is a string"), ([1], "[1] is a list")])
def test_non_integer_category_id_is_dropped_with_its_type_named(category_id, kind):
    gt, kind = _two_videos(), re.escape(kind)
    with pytest.warns(YTVISInputWarning, match=rf"not an integer .* dropped .*: entry 0 \(category_id {kind}; "):
        check(evaluate_ytvis(gt, [dict(pred([A, A], 0.9), category_id=category_id)]), AP=0)
    with pytest.raises(ValueError, match=rf"entry 0 \(category_id {kind};.*refused by --strict"):
        evaluate_ytvis(gt, [dict(pred([A, A], 0.9), category_id=category_id)], strict=True)


# --- polygons ----------------------------------------------------------------------------------------------


def _limited_memory():
    """Before the polygon checks, pycocotools allocated gigabytes for these: fail fast, not the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


@pytest.mark.parametrize(
    "polygons, problem",
    [
        ([[10, 10, float("nan"), 20, 20, 20]], "polygon 0 has the non-finite coordinate NaN"),
        ([[0, 0, 4e8, 0, 4e8, 4e8]], "polygon 0 has a perimeter of 1.2e+09 px"),
        ([[0, 0, 10, 0, 10, 10], [1, 2, 3]], "polygon 1 has 3 coordinates"),
        ([[1, 2]], "polygon 0 has 2 coordinates"),
        ([0, 0, 10, 0, 10, 10], "polygons must be a list of [x1, y1, x2, y2, ...] lists, got an integer"),
        ([[0, 0, "10", 0, 10, 10]], "polygon 0 has the coordinate '10', a string, not a number"),
    ],
)
def test_cli_refuses_malformed_polygons(tmp_path, polygons, problem):
    results = [pred([A, A], 0.9), pred([B, B], 0.8)]
    results[1]["segmentations"][1] = polygons
    gt_file, res_file = _files(tmp_path, _two_videos(), results)
    proc = subprocess.run(
        [sys.executable, "-m", "projects.evaluation", str(gt_file), str(res_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limited_memory,
    )
    line = _one_error_line(proc)
    assert f"my_res.json: entry 1: bad segmentation in frame 1: {problem}" in line


def test_valid_polygons_are_still_scored():
    square = [[0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0]]  # the 10x10 square A as a polygon
    m = evaluate_ytvis(gt_json([{"masks": [A, A]}]), [dict(pred([A, A], 0.9), segmentations=[square, rle(A)])])
    assert m["AP50"] == pytest.approx(1.0)


# --- ground truth ------------------------------------------------------------------------------------------


def _gt_case(case):
    gt = gt_json([{"masks": [A, A]}, {"masks": [B, B]}])
    video, ann = gt["videos"][0], gt["annotations"][1]
    if case == "height_string":
        video["height"] = "abc"
    elif case == "negative_length":
        video["length"] = -1
    elif case == "video_id_string":
        video["id"] = "1"
    elif case == "annotation_video_id_string":
        ann["video_id"] = "1"
    elif case == "annotation_video_id_list":
        ann["video_id"] = [1]
    elif case == "areas_not_a_list":
        ann["areas"] = 5
    elif case == "areas_strings":
        ann["areas"] = ["x", None]
    elif case == "iscrowd_string":
        ann["iscrowd"] = "no"
    return gt


@pytest.mark.parametrize(
    "case, message",
    [
        ("height_string", "videos[0]: 'height' must be an integer >= 1, got 'abc'"),
        ("negative_length", "videos[0]: 'length' must be an integer >= 0, got -1"),
        ("video_id_string", "videos[0]: id '1' is a string; YouTube-VIS uses integers"),
        ("annotation_video_id_string", "annotations[1]: video_id '1' is a string; 'videos' uses integers"),
        ("annotation_video_id_list", "annotations[1]: video_id [1] is a list; 'videos' uses integers"),
        ("areas_not_a_list", "annotations[1]: 'areas' must be a list of numbers or nulls, got 5"),
        ("areas_strings", "annotations[1]: 'areas' must be a list of numbers or nulls, got [\"x\", null]"),
        ("iscrowd_string", "annotations[1]: 'iscrowd' must be 0 or 1, got 'no'"),
    ],
)
def test_cli_refuses_malformed_ground_truth(tmp_path, case, message):
    line = _one_error_line(_cli(*_files(tmp_path, _gt_case(case), [pred([A, A], 0.9)])))
    assert f"ground truth {tmp_path / 'gt.json'}: {message}" in line


def test_duplicate_video_and_category_ids_in_the_ground_truth_are_reported():
    gt = gt_json([{"masks": [A, A]}])
    gt["videos"].append(dict(gt["videos"][0]))
    gt["categories"].append({"id": 1, "name": "kitten"})
    with pytest.warns(YTVISInputWarning) as caught:
        m = evaluate_ytvis(gt, [pred([A, A], 0.9)])
    assert m["per_class"] == pytest.approx({"kitten": 1.0, "dog": -1})  # the last name, as the official code
    messages = " | ".join(str(w.message) for w in caught)
    assert "video id used more than once in 'videos' (the official evaluation uses the last): videos[1] (id 1)" in (
        messages
    )
    assert "category id used more than once" in messages and "categories[2] (id 1)" in messages
    with pytest.raises(ValueError, match=r"videos\[1\] \(id 1\): video id used more than once.*--strict"):
        evaluate_ytvis(gt, [pred([A, A], 0.9)], strict=True)


def test_integral_float_video_size_is_accepted():
    gt = gt_json([{"masks": [A, A]}])
    gt["videos"][0].update(height=float(A.shape[0]), length=2.0)
    check(evaluate_ytvis(gt, [pred([A, A], 0.9)]), AP=1)
