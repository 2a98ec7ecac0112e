"""YTVISEvaluator: results.json / results.zip for the server, percentages like COCOEvaluator."""

import json
import math
import re
import uuid
import zipfile

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import MetadataCatalog

from projects.evaluation import YTVISEvaluator

H = W = 64


def box(x0, y0, x1, y1):
    m = np.zeros((H, W), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


A, B = box(0, 0, 20, 20), box(30, 30, 50, 50)


def _register(tmp_path, with_annotations=True):
    """A 1-video, 3-frame dataset with dataset category ids 3 ("cat") and 7 ("dog"); GT: one cat track."""
    gt = {
        "videos": [{"id": 5, "height": H, "width": W, "length": 3, "file_names": ["a", "b", "c"]}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
    }
    if with_annotations:
        segms = [mask_util.encode(np.asfortranarray(A)), None, mask_util.encode(np.asfortranarray(B))]
        for s in segms[::2]:
            s["counts"] = s["counts"].decode()
        gt["annotations"] = [
            {"id": 1, "video_id": 5, "category_id": 3, "iscrowd": 0, "segmentations": segms, "areas": [400, None, 400]}
        ]
    json_file = tmp_path / "gt.json"
    json_file.write_text(json.dumps(gt))
    name = f"ytvis_evaluator_test_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).set(
        json_file=str(json_file), thing_classes=["cat", "dog"], thing_dataset_id_to_contiguous_id={3: 0, 7: 1}
    )
    return name


def _outputs():
    """Model outputs (docs/interfaces.md): contiguous classes; masks as bytes-RLE, tensor, None, empty."""
    perfect = [mask_util.encode(np.asfortranarray(A)), None, torch.from_numpy(B).bool()]
    wrong_class = [None, mask_util.encode(np.asfortranarray(np.zeros((H, W), np.uint8))), A]
    return [
        {
            "video_id": 5,
            "height": H,
            "width": W,
            "length": 3,
            "tracks": [
                {"score": 0.9, "category_id": 0, "segmentations": perfect},
                {"score": 0.8, "category_id": 1, "segmentations": wrong_class},
            ],
        }
    ]


def _refuse(token):
    raise ValueError(f"metrics.json is not strict JSON: it holds {token}")


def test_evaluator_writes_zip_and_returns_percentages(tmp_path):
    name = _register(tmp_path)
    evaluator = YTVISEvaluator(name, output_dir=str(tmp_path / "out"))
    evaluator.reset()
    evaluator.process([{"video_id": 5}], _outputs())
    results = evaluator.evaluate()
    segm = results["segm"]
    assert segm["AP"] == pytest.approx(100.0) and segm["AP50"] == pytest.approx(100.0)
    assert segm["AR1"] == pytest.approx(100.0) and segm["APs"] == pytest.approx(100.0)
    assert math.isnan(segm["APl"]) and math.isnan(segm["AP-dog"])  # undefined -> NaN like COCOEvaluator
    assert segm["AP-cat"] == pytest.approx(100.0)
    assert list(segm)[:8] == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"]

    saved = json.loads((tmp_path / "out" / "metrics.json").read_text(), parse_constant=_refuse)  # strict JSON
    assert saved["dataset"] == name
    assert saved["segm"]["AP"] == pytest.approx(100.0)
    assert saved["segm"]["APl"] is None and saved["segm"]["AP-dog"] is None  # undefined -> null
    assert set(saved["segm"]) == set(segm)

    written = json.loads((tmp_path / "out" / "results.json").read_text())
    with zipfile.ZipFile(tmp_path / "out" / "results.zip") as zf:
        assert zf.namelist() == ["results.json"]
        assert json.loads(zf.read("results.json")) == written
    assert [(r["video_id"], r["category_id"], r["score"]) for r in written] == [(5, 3, 0.9), (5, 7, 0.8)]
    first, second = written[0]["segmentations"], written[1]["segmentations"]
    assert first[1] is None and second[0] is None and second[1] is None  # empty mask -> null
    assert isinstance(first[0]["counts"], str) and first[0]["size"] == [H, W]
    assert mask_util.area({**first[2], "counts": first[2]["counts"].encode()}) == B.sum()


def test_evaluator_without_annotations_only_writes_results(tmp_path):
    evaluator = YTVISEvaluator(_register(tmp_path, with_annotations=False), output_dir=str(tmp_path), distributed=False)
    evaluator.reset()
    evaluator.process([{"video_id": 5}], _outputs())
    assert evaluator.evaluate() == {}
    assert not (tmp_path / "metrics.json").exists()
    with zipfile.ZipFile(tmp_path / "results.zip") as zf:
        assert len(json.loads(zf.read("results.json"))) == 2
    evaluator.reset()
    assert evaluator.evaluate() == {} and json.loads((tmp_path / "results.json").read_text()) == []


def test_evaluator_logs_input_findings_and_scores_like_official(tmp_path, caplog):
    name = _register(tmp_path)
    json_file = MetadataCatalog.get(name).json_file
    gt = json.loads(open(json_file).read())
    gt["annotations"][0]["id"] = 0  # official matching never counts a match to GT id 0 as a TP
    open(json_file, "w").write(json.dumps(gt))
    evaluator = YTVISEvaluator(name, output_dir=str(tmp_path / "out"), distributed=False)
    evaluator.reset()
    evaluator.process([{"video_id": 5}], _outputs())
    with caplog.at_level("WARNING", logger="projects.evaluation.evaluator"):
        segm = evaluator.evaluate()["segm"]
    assert segm["AP"] == pytest.approx(0.0) and segm["AR10"] == pytest.approx(0.0)
    assert any("annotation id 0" in r.getMessage() and "annotations[0]" in r.getMessage() for r in caplog.records)


def test_evaluator_refuses_corrupt_gt_mask(tmp_path):
    name = _register(tmp_path)
    json_file = MetadataCatalog.get(name).json_file
    gt = json.loads(open(json_file).read())
    gt["annotations"][0]["segmentations"][2]["counts"] += "1"  # one more (delta-coded) run: past H*W
    open(json_file, "w").write(json.dumps(gt))
    evaluator = YTVISEvaluator(name, output_dir=str(tmp_path / "out"), distributed=False)
    evaluator.reset()
    evaluator.process([{"video_id": 5}], _outputs())
    message = r"gt\.json: annotations\[0\]: bad segmentation in frame 2: .*sum to \d+, not height\*width = 64\*64"
    with pytest.raises(ValueError, match=message):
        evaluator.evaluate()


def test_evaluator_refuses_a_non_finite_score_naming_results_json(tmp_path):
    name = _register(tmp_path)
    evaluator = YTVISEvaluator(name, output_dir=str(tmp_path / "out"), distributed=False)
    evaluator.reset()
    outputs = _outputs()
    outputs[0]["tracks"][1]["score"] = float("nan")  # a diverged model
    evaluator.process([{"video_id": 5}], outputs)
    results_json = str(tmp_path / "out" / "results.json")
    with pytest.raises(ValueError, match=re.escape(f"{results_json}: entry 1 (video_id 5): score NaN is not a finite")):
        evaluator.evaluate()


def test_evaluator_names_a_class_index_the_dataset_does_not_have(tmp_path):
    """A model built for more classes than the dataset has (class index 2 of a 2-class set): one clear line,
    not a bare KeyError."""
    name = _register(tmp_path)
    evaluator = YTVISEvaluator(name, output_dir=str(tmp_path / "out"), distributed=False)
    evaluator.reset()
    outputs = _outputs()
    outputs[0]["tracks"][1]["category_id"] = 2
    with pytest.raises(ValueError, match="predicted class index 2 but the dataset has 2 categories"):
        evaluator.process([{"video_id": 5}], outputs)
