import json
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from projects.data import DatasetFormatError, load_ytvis_json, register_ytvis_instances
from projects.data.categories import OVIS_CATEGORIES, YTVIS_2019_CATEGORIES, YTVIS_2021_CATEGORIES
from projects.utils.masks import decode_mask
from tests.ytvis_fixtures import write_tiny_ytvis


@pytest.mark.parametrize("kind", ["uncompressed", "compressed", "polygon"])
def test_load_all_segmentation_formats_to_same_masks(tmp_path, kind):
    json_file, image_root, gt = write_tiny_ytvis(str(tmp_path), kind=kind)
    videos = load_ytvis_json(json_file, image_root)
    assert [v["video_id"] for v in videos] == [1, 2]
    v = videos[0]
    assert v["length"] == 4 and len(v["file_names"]) == 4 and v["height"] == 32 and v["width"] == 48
    assert v["file_names"][0] == os.path.join(image_root, "video1/00000.jpg")
    assert [len(a) for a in v["annotations"]] == [2, 2, 1, 2]  # ball is null in frame 2
    cube = v["annotations"][1][0]
    assert cube["id"] == 1 and cube["category_id"] == 0  # dataset id 3 -> contiguous 0
    assert v["annotations"][0][1]["category_id"] == 1  # dataset id 7 -> contiguous 1
    assert cube["bbox_mode"] == BoxMode.XYWH_ABS and cube["bbox"] == [4.0, 4.0, 12.0, 12.0]
    expected = np.zeros((32, 48), bool)
    expected[4:16, 4:16] = True
    assert (decode_mask(cube["segmentation"], 32, 48) == expected).all()


def test_valid_json_without_annotations_loads_for_inference(tmp_path):
    json_file, image_root, _ = write_tiny_ytvis(str(tmp_path), with_annotations=False)
    videos = load_ytvis_json(json_file, image_root)
    assert len(videos) == 2 and all("annotations" not in v for v in videos)


def test_crowd_flag_and_missing_bboxes_are_handled(tmp_path):
    json_file, image_root, gt = write_tiny_ytvis(str(tmp_path), kind="compressed")
    gt["annotations"][0]["iscrowd"] = 1
    del gt["annotations"][1]["bboxes"]
    with open(json_file, "w") as f:
        json.dump(gt, f)
    v = load_ytvis_json(json_file, image_root)[0]
    assert v["annotations"][0][0]["iscrowd"] == 1
    assert v["annotations"][0][1]["bbox"] == [30.0, 18.0, 14.0, 12.0]  # from the mask


def test_official_category_lists():
    assert YTVIS_2019_CATEGORIES[0] == {"id": 1, "name": "person"}
    assert YTVIS_2019_CATEGORIES[-1] == {"id": 40, "name": "tennis_racket"}
    assert YTVIS_2021_CATEGORIES[0]["name"] == "airplane" and YTVIS_2021_CATEGORIES[-1]["name"] == "zebra"
    assert OVIS_CATEGORIES[0]["name"] == "Person" and len(OVIS_CATEGORIES) == 25
    meta = MetadataCatalog.get("ytvis_2019_train")
    assert len(meta.thing_classes) == 40 and len(meta.thing_colors) == 40
    assert meta.thing_dataset_id_to_contiguous_id[40] == 39
    assert meta.json_file.endswith(os.path.join("ytvis_2019", "train.json"))
    for name in ("ytvis_2019_val", "ytvis_2021_train", "ytvis_2021_val", "ovis_train", "ovis_val"):
        assert name in DatasetCatalog.list()


def test_register_custom_dataset_takes_categories_from_json(tmp_path):
    json_file, image_root, _ = write_tiny_ytvis(str(tmp_path))
    register_ytvis_instances("tiny_custom_loader_test", json_file, image_root)
    meta = MetadataCatalog.get("tiny_custom_loader_test")
    assert meta.thing_classes == ["cube", "ball"] and meta.evaluator_type == "ytvis"
    assert len(DatasetCatalog.get("tiny_custom_loader_test")) == 2


def _rewrite(json_file, gt):
    with open(json_file, "w") as f:
        json.dump(gt, f)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda gt: gt.pop("videos"), "missing required key 'videos'"),
        (lambda gt: gt["videos"][0].pop("file_names"), "video 1 is missing required key 'file_names'"),
        (lambda gt: gt["videos"][1].update(file_names=[], length=0), "video 2 has no frames"),
        (lambda gt: gt["annotations"][0]["segmentations"].pop(), "'segmentations' has 3 entries, the video has 4"),
        (lambda gt: gt["annotations"][0].update(video_id=99), "refers to a video id that is not in 'videos'"),
        (lambda gt: gt["annotations"][0].update(category_id=5), "category_id 5 not in 'categories'"),
        (lambda gt: gt["videos"][0].update(length=9), "'length' is 9 but it lists 4 file_names"),
    ],
)
def test_malformed_json_gives_clear_error_naming_the_file(tmp_path, corrupt, message):
    json_file, image_root, gt = write_tiny_ytvis(str(tmp_path))
    corrupt(gt)
    _rewrite(json_file, gt)
    with pytest.raises(DatasetFormatError, match=message) as err:
        load_ytvis_json(json_file, image_root)
    assert json_file in str(err.value)


def test_not_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        load_ytvis_json(str(bad), str(tmp_path))
    with pytest.raises(DatasetFormatError, match="does not exist"):
        load_ytvis_json(str(tmp_path / "nope.json"), str(tmp_path))


def test_one_frame_video_loads(tmp_path):
    json_file, image_root, _ = write_tiny_ytvis(str(tmp_path), length=1, null_frame=None)
    v = load_ytvis_json(json_file, image_root)[0]
    assert v["length"] == 1 and len(v["annotations"]) == 1 and len(v["annotations"][0]) == 2
