"""Local protocol: deterministic <stem>_train_sub / <stem>_holdout splits of annotated video datasets."""

import json
import uuid

import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog

from projects.config import add_video_config
from projects.data import build_video_test_loader, holdout_video_ids, register_ytvis_instances, splits
from projects.data.categories import YTVIS_2019_CATEGORIES
from projects.evaluation import YTVISEvaluator
from tests.train_cli import run_python
from tests.ytvis_fixtures import CATEGORIES, write_tiny_ytvis


@pytest.fixture(autouse=True)
def _reset_split_settings():
    splits._SETTINGS.update(holdout_size=-1, output_dir=None)
    yield
    splits._SETTINGS.update(holdout_size=-1, output_dir=None)


def _cfg(output_dir="", holdout_size=-1):
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.DATASETS.HOLDOUT_SIZE = holdout_size
    cfg.DATALOADER.NUM_WORKERS = 0
    return cfg


def _register(tmp_path, num_videos=10, **kw):
    stem = f"splittest_{uuid.uuid4().hex[:8]}"
    json_file, image_root, gt = write_tiny_ytvis(str(tmp_path), num_videos=num_videos, length=3, **kw)
    register_ytvis_instances(f"{stem}_train", json_file, image_root)
    return stem, json_file, gt


def test_holdout_selection_is_fixed_order_independent_and_nested():
    ids = list(range(1, 101))
    held = holdout_video_ids(ids, 10)
    assert held == holdout_video_ids(list(reversed(ids)), 10)
    assert held < holdout_video_ids(ids, 20)  # a larger holdout extends a smaller one
    # pinned: the documented seed (SPLIT_SEED) gives every user this split of these ids
    assert sorted(holdout_video_ids(range(1, 21), 3)) == sorted(
        sorted(range(1, 21), key=lambda v: __import__("hashlib").sha256(f"2021:{v}".encode()).hexdigest())[:3]
    )
    assert splits.SPLIT_SEED == 2021
    with pytest.raises(ValueError, match="size"):
        holdout_video_ids(ids, 100)
    with pytest.raises(ValueError, match="not unique"):
        holdout_video_ids([1, 1, 2], 1)


def test_splits_are_lazy_disjoint_and_cover_the_source(tmp_path):
    missing = str(tmp_path / "not_yet.json")
    register_ytvis_instances("lazytest_train", missing, str(tmp_path), metadata={"thing_classes": ["a"]})
    assert "lazytest_holdout" in DatasetCatalog.list() and "lazytest_train_sub" in DatasetCatalog.list()
    with pytest.raises(Exception, match="not_yet.json"):  # only reading the split touches the JSON
        DatasetCatalog.get("lazytest_holdout")

    stem, _, gt = _register(tmp_path, num_videos=10)
    sub, held = DatasetCatalog.get(f"{stem}_train_sub"), DatasetCatalog.get(f"{stem}_holdout")
    assert len(held) == 1 and len(sub) == 9  # default for user datasets: 10 %
    sub_ids, held_ids = {v["video_id"] for v in sub}, {v["video_id"] for v in held}
    assert not sub_ids & held_ids and sub_ids | held_ids == {v["id"] for v in gt["videos"]}
    assert all("annotations" in v for v in held)
    assert MetadataCatalog.get(f"{stem}_holdout").thing_classes == ["cube", "ball"]

    splits.configure_splits(_cfg(holdout_size=4))
    assert len(DatasetCatalog.get(f"{stem}_holdout")) == 4 and len(DatasetCatalog.get(f"{stem}_train_sub")) == 6
    assert held_ids < {v["video_id"] for v in DatasetCatalog.get(f"{stem}_holdout")}


def test_bad_holdout_sizes_and_unannotated_sources_fail_clearly(tmp_path):
    stem, _, _ = _register(tmp_path, num_videos=3)
    splits.configure_splits(_cfg(holdout_size=3))
    with pytest.raises(ValueError, match=f"{stem}_train.*HOLDOUT_SIZE"):
        DatasetCatalog.get(f"{stem}_holdout")
    with pytest.raises(ValueError, match="HOLDOUT_SIZE"):
        splits.configure_splits(_cfg(holdout_size=0))
    name = f"noann_{uuid.uuid4().hex[:6]}"
    json_file, image_root, _ = write_tiny_ytvis(str(tmp_path / "v"), with_annotations=False)
    register_ytvis_instances(f"{name}_train", json_file, image_root)
    with pytest.raises(ValueError, match="no annotations"):
        DatasetCatalog.get(f"{name}_holdout")


def test_ids_recorded_in_output_dir_and_a_changed_split_is_refused(tmp_path):
    stem, _, _ = _register(tmp_path / "data", num_videos=10)
    out = tmp_path / "out"
    splits.configure_splits(_cfg(out, holdout_size=2))
    held = {v["video_id"] for v in DatasetCatalog.get(f"{stem}_holdout")}
    record = json.loads((out / "splits" / f"{stem}_train.json").read_text())
    assert set(record["holdout_video_ids"]) == held and record["seed"] == splits.SPLIT_SEED
    assert record["holdout_size"] == 2 and record["num_videos"] == 10
    DatasetCatalog.get(f"{stem}_train_sub")  # same split: fine
    splits.configure_splits(_cfg(out, holdout_size=3))
    with pytest.raises(ValueError, match="another held-out split"):
        DatasetCatalog.get(f"{stem}_train_sub")


def test_holdout_is_evaluated_against_its_own_ground_truth(tmp_path):
    stem, _, gt = _register(tmp_path / "data", num_videos=6, kind="compressed")
    cfg = _cfg(tmp_path / "out", holdout_size=2)
    name = f"{stem}_holdout"
    loader = build_video_test_loader(cfg, name)
    videos = [batch[0] for batch in loader]
    assert len(videos) == 2
    split_gt = json.loads(open(MetadataCatalog.get(name).json_file).read())
    assert {v["id"] for v in split_gt["videos"]} == {v["video_id"] for v in videos}
    assert {a["video_id"] for a in split_gt["annotations"]} == {v["video_id"] for v in videos}
    assert split_gt["categories"] == CATEGORIES

    # perfect predictions for the held-out videos -> AP 100 (the other videos' GT is not counted)
    evaluator = YTVISEvaluator(name, output_dir=str(tmp_path / "eval"), distributed=False)
    evaluator.reset()
    by_id = {v["video_id"]: v for v in DatasetCatalog.get(name)}
    for video in videos:
        d = by_id[video["video_id"]]
        tracks = {}
        for t, frame in enumerate(d["annotations"]):
            for a in frame:
                tr = tracks.setdefault(
                    a["id"], {"score": 1.0, "category_id": a["category_id"], "segmentations": [None] * d["length"]}
                )
                tr["segmentations"][t] = a["segmentation"]
        evaluator.process([video], [{"video_id": video["video_id"], "tracks": list(tracks.values())}])
    assert evaluator.evaluate()["segm"]["AP"] == pytest.approx(100.0)

    build_video_test_loader(_cfg(tmp_path / "out2", holdout_size=2), name)  # a second run elsewhere
    assert MetadataCatalog.get(name).json_file == str(tmp_path / "out2" / "splits" / f"{name}_gt.json")
    assert MetadataCatalog.get(name).thing_classes == ["cube", "ball"]


def test_cli_datasets_get_splits(tmp_path):
    from train_net import register_cli_datasets

    json_file, image_root, _ = write_tiny_ytvis(str(tmp_path), num_videos=5)
    name = f"cli_{uuid.uuid4().hex[:6]}"
    register_cli_datasets([f"{name}_train={json_file}:{image_root}"])
    assert len(DatasetCatalog.get(f"{name}_holdout")) == 1 and len(DatasetCatalog.get(f"{name}_train_sub")) == 4


def test_builtin_splits_use_the_paper_size_under_detectron2_datasets(tmp_path):
    """ytvis_2019_{train_sub,holdout} of a (fake, official-format) ytvis_2019/train.json: 200 held out."""
    root = tmp_path / "ytvis_2019"
    root.mkdir()
    n = 230
    videos = [
        {"id": i, "width": 64, "height": 48, "length": 2, "file_names": [f"v{i}/0.jpg", f"v{i}/1.jpg"]}
        for i in range(1, n + 1)
    ]
    anns = [
        {
            "id": i,
            "video_id": i,
            "category_id": 1 + i % 40,
            "iscrowd": 0,
            "width": 64,
            "height": 48,
            "length": 2,
            "segmentations": [{"size": [48, 64], "counts": [100, 20, 48 * 64 - 120]}, None],
            "areas": [20.0, None],
            "bboxes": [[2.0, 4.0, 1.0, 20.0], None],
        }
        for i in range(1, n + 1)
    ]
    (root / "train.json").write_text(
        json.dumps(
            {"videos": videos, "annotations": anns, "categories": YTVIS_2019_CATEGORIES, "info": {}, "licenses": []}
        )
    )
    code = (
        "import projects.data, json\n"
        "from detectron2.data import DatasetCatalog\n"
        "h, s = DatasetCatalog.get('ytvis_2019_holdout'), DatasetCatalog.get('ytvis_2019_train_sub')\n"
        "print(json.dumps([sorted(v['video_id'] for v in h), len(s)]))\n"
    )
    proc = run_python(["-W", "ignore", "-c", code], DETECTRON2_DATASETS=str(tmp_path))
    proc.check_returncode()
    out = proc.stdout
    held, num_sub = json.loads(out.strip().splitlines()[-1])
    assert len(held) == 200 and num_sub == 30
    assert set(held) == holdout_video_ids(range(1, n + 1), 200)
    assert splits.DEFAULT_HOLDOUT_SIZES == {"ytvis_2019_train": 200, "ytvis_2021_train": 300, "ovis_train": 60}
