"""COCO-format image datasets as training sources: category maps, single frames / pseudo-videos, weighted mixing."""

import itertools
import json
import os
import uuid

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from detectron2.data.samplers import RepeatFactorTrainingSampler

from projects.config import add_video_config
from projects.data import (
    DatasetFormatError,
    PseudoVideoMapper,
    RandomZoomShiftFlip,
    build_video_train_loader,
    get_train_sources,
    load_category_map,
    register_ytvis_instances,
    resolve_num_classes,
    source_repeat_factors,
)
from projects.data.build import get_video_dataset_dicts
from projects.data.categories import OVIS_CATEGORIES, YTVIS_2019_CATEGORIES, YTVIS_2021_CATEGORIES
from projects.data.synthetic import generate_synthetic_vis
from projects.data.synthetic_shapes import SYNTHETIC_CATEGORIES
from tests.coco_fixtures import write_painted_coco
from tests.train_cli import run_python

SYN_NAMES = [c["name"] for c in SYNTHETIC_CATEGORIES]


def _polygons(mask):
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def write_coco_from_synthetic(root, num_videos=2, num_frames=3, seed=3, prefix="img_"):
    """Synthetic videos (the project's generator) -> (YouTube-VIS JSON, COCO JSON of every frame, image roots).

    COCO categories are the synthetic ones renamed ``prefix + name`` with ids + 100; even annotation ids are
    polygons, odd ones compressed RLE, as in COCO.
    """
    ytvis_json = generate_synthetic_vis(root, num_videos, num_frames, 64, 80, seed, split_name="train")
    image_root = os.path.join(root, "train", "JPEGImages")
    data = json.load(open(ytvis_json))
    images, annotations = [], []
    for v in data["videos"]:
        for t, fname in enumerate(v["file_names"]):
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": fname, "height": v["height"], "width": v["width"]})
            for a in (a for a in data["annotations"] if a["video_id"] == v["id"]):
                segm = a["segmentations"][t]
                if not segm:
                    continue
                mask = mask_util.decode(mask_util.frPyObjects(segm, v["height"], v["width"]))
                polys = _polygons(mask)
                if not polys:
                    continue
                ann_id = len(annotations) + 1
                if ann_id % 2:
                    rle = mask_util.encode(np.asfortranarray(mask))
                    segmentation = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
                else:
                    segmentation = polys
                x, y, w, h = cv2.boundingRect(mask)
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": a["category_id"] + 100,
                        "segmentation": segmentation,
                        "area": float(mask.sum()),
                        "bbox": [x, y, w, h],
                        "iscrowd": 0,
                    }
                )
    categories = [{"id": c["id"] + 100, "name": prefix + c["name"]} for c in SYNTHETIC_CATEGORIES]
    coco_json = os.path.join(root, "coco_frames.json")
    json.dump({"images": images, "annotations": annotations, "categories": categories}, open(coco_json, "w"))
    return ytvis_json, coco_json, image_root


def _uid(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A synthetic video dataset and its frames as a COCO-format image dataset (5 of 6 categories mapped)."""
    root = str(tmp_path_factory.mktemp("imgsrc"))
    ytvis_json, coco_json, image_root = write_coco_from_synthetic(root)
    video, image = _uid("synvid"), _uid("syncoco")
    register_ytvis_instances(video, ytvis_json, image_root)
    register_coco_instances(image, {}, coco_json, image_root)
    cmap = os.path.join(root, "map.json")
    json.dump({f"img_{n}": n for n in SYN_NAMES[:5]}, open(cmap, "w"))  # 'img_cross' unmapped
    return {"video": video, "image": image, "map": cmap, "root": root, "coco_json": coco_json}


def _cfg(train, test=(), **kw):
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = tuple(train), tuple(test)
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (64,), 128
    cfg.DATALOADER.NUM_WORKERS, cfg.SOLVER.IMS_PER_BATCH = 0, 4
    for k, v in kw.items():
        node = cfg
        *path, leaf = k.split("__")
        for p in path:
            node = node[p]
        node[leaf] = v
    return cfg


def test_category_map_relabels_drops_unmapped_and_keeps_ids_unique(sources):
    cfg = _cfg([sources["image"]], [sources["video"]], DATASETS__CATEGORY_MAP=sources["map"])
    ((name, records),) = get_train_sources(cfg)
    coco = json.load(open(sources["coco_json"]))
    cross = {a["image_id"] for a in coco["annotations"] if a["category_id"] == 106}
    only_cross = {i for i in cross if all(a["category_id"] == 106 for a in coco["annotations"] if a["image_id"] == i)}
    kept = sum(1 for a in coco["annotations"] if a["category_id"] != 106)
    assert name == sources["image"]
    assert sum(len(r["annotations"]) for r in records) == kept
    assert len(records) == len({a["image_id"] for a in coco["annotations"]} - only_cross)
    for r in records:
        assert [a["id"] for a in r["annotations"]] == list(range(1, len(r["annotations"]) + 1))
        assert all(0 <= a["category_id"] < 5 for a in r["annotations"])  # 'cross' (index 5) never appears
    # contiguous ids follow the *video* classes: img_<name> (COCO id 100 + k) -> video class <name> (index k - 1)
    for r in records:
        expected = [
            a["category_id"] - 101
            for a in coco["annotations"]
            if a["image_id"] == r["image_id"] and a["category_id"] != 106
        ]
        assert [a["category_id"] for a in r["annotations"]] == expected
    cfg.MODEL.NUM_CLASSES = -1
    assert resolve_num_classes(cfg) == 6  # from the video dataset, though an image dataset comes first


def test_bad_category_maps_and_sources_fail_clearly(sources, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"img_disc": "dodecahedron"}))
    with pytest.raises(DatasetFormatError, match="bad.json.*dodecahedron"):
        load_category_map(str(bad), SYN_NAMES)
    bad.write_text("{not json")
    with pytest.raises(DatasetFormatError, match="bad.json.*not valid JSON"):
        load_category_map(str(bad), SYN_NAMES)
    bad.write_text(json.dumps(["disc"]))
    with pytest.raises(DatasetFormatError, match="JSON object"):
        load_category_map(str(bad), SYN_NAMES)
    with pytest.raises(DatasetFormatError, match="does not exist"):
        load_category_map(str(tmp_path / "nope.json"), SYN_NAMES)
    with pytest.raises(ValueError, match="CATEGORY_MAP"):  # other names and no map
        get_train_sources(_cfg([sources["video"], sources["image"]]))
    with pytest.raises(ValueError, match="image datasets"):
        get_video_dataset_dicts([sources["image"]])
    with pytest.raises(ValueError, match="TRAIN_WEIGHTS has 1 entries for 2"):
        source_repeat_factors([3, 4], [1.0])
    with pytest.raises(ValueError, match="> 0"):
        source_repeat_factors([3, 4], [1.0, 0.0])


def test_shipped_coco_maps_use_exact_class_names():
    coco = [c["name"] for c in COCO_CATEGORIES if c["isthing"]]
    for spec, cats, n in (
        ("coco_to_ytvis_2019", YTVIS_2019_CATEGORIES, 19),
        ("coco_to_ytvis_2021", YTVIS_2021_CATEGORIES, 21),
        ("coco_to_ovis", OVIS_CATEGORIES, 18),
    ):
        m = load_category_map(spec, [c["name"] for c in cats])  # raises on a value that is not a video class
        assert set(m) <= set(coco) and len(m) == n
    m19 = load_category_map("coco_to_ytvis_2019", [c["name"] for c in YTVIS_2019_CATEGORIES])
    assert m19["car"] == "sedan" and m19["motorcycle"] == "motorbike" and "mouse" not in m19  # computer mouse


def _track_values(sample, image_gray_levels=(50, 100, 150)):
    """Per frame: {gt_id: median grey level of the image under the (eroded) mask}."""
    out = []
    for img, inst in zip(sample["image"], sample["instances"]):
        grey = img[0].numpy().astype(float)
        vals = {}
        for k, m in zip(inst.gt_ids.tolist(), inst.gt_masks.tensor.numpy()):
            inner = cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            if inner.sum() >= 4:
                vals[k] = float(np.median(grey[inner]))
        out.append(vals)
    return out


@pytest.mark.parametrize("num_frames", [1, 2, 3])
def test_pseudo_video_frames_are_independent_and_consistent(tmp_path, num_frames):
    json_file, image_root = write_painted_coco(str(tmp_path))
    name = _uid("painted")
    register_coco_instances(name, {}, json_file, image_root)
    cfg = _cfg([name], INPUT__SAMPLING_FRAME_NUM=num_frames, INPUT__RANDOM_FLIP="horizontal")
    cfg.INPUT.PSEUDO_VIDEO.SCALE_RANGE, cfg.INPUT.PSEUDO_VIDEO.SHIFT_RANGE = (0.6, 1.4), (0.4, 0.4)
    cfg.INPUT.PSEUDO_VIDEO.FLIP_PROB = 0.5
    ((_, records),) = get_train_sources(cfg)
    mapper = PseudoVideoMapper(cfg, True, seed=0)
    differing, checked = 0, 0
    for _ in range(6):
        for rec in records:
            sample = mapper(rec)
            if sample is None:
                continue
            assert len(sample["image"]) == len(sample["instances"]) == num_frames
            assert len({tuple(i.shape[-2:]) for i in sample["image"]}) == 1  # one size per sample
            assert all(
                tuple(inst.image_size) == tuple(img.shape[-2:])
                for img, inst in zip(sample["image"], sample["instances"])
            )
            for vals in _track_values(sample):  # mask k covers the pixels painted for object k
                for k, v in vals.items():
                    assert abs(v - 50 * k) <= 12, (k, v)
                    checked += 1
            for inst in sample["instances"]:  # boxes are tight around the transformed masks
                if len(inst):
                    assert torch.allclose(inst.gt_boxes.tensor, inst.gt_masks.get_bounding_boxes().tensor)
            if num_frames > 1:
                a, b = sample["instances"][0], sample["instances"][1]
                same_ids = a.gt_ids.tolist() == b.gt_ids.tolist()
                differing += not (same_ids and torch.equal(a.gt_masks.tensor, b.gt_masks.tensor))
    assert checked > 30
    if num_frames > 1:
        assert differing >= 20  # 24 samples: the frames of (almost) every pseudo-video differ


def test_corrupt_image_is_skipped_and_counted_or_fails(tmp_path):
    json_file, image_root = write_painted_coco(str(tmp_path), num_images=2)
    name = _uid("corrupt")
    register_coco_instances(name, {}, json_file, image_root)
    open(os.path.join(image_root, "1.png"), "wb").write(b"\x89PNG truncated")
    cfg = _cfg([name], INPUT__SAMPLING_FRAME_NUM=2)
    ((_, records),) = get_train_sources(cfg)
    bad, good = sorted(records, key=lambda r: r["file_name"])
    mapper = PseudoVideoMapper(cfg, True, seed=0)
    assert mapper(bad) is None
    assert mapper(good)["skipped_samples"] == 1 and mapper(good)["skipped_samples"] == 0
    cfg.INPUT.ON_BAD_FRAME = "fail"
    with pytest.raises(DatasetFormatError, match="1.png"):
        PseudoVideoMapper(cfg, True)(bad)


def test_zoom_shift_flip_keeps_the_size_and_is_random():
    aug = RandomZoomShiftFlip((0.5, 1.5), (0.3, 0.3), 0.5, rng=np.random.RandomState(0))
    img = np.random.RandomState(1).randint(0, 255, (30, 50, 3)).astype(np.uint8)
    outs = [aug.get_transform(img).apply_image(img) for _ in range(5)]
    assert all(o.shape == img.shape for o in outs)
    assert len({o.tobytes() for o in outs}) == 5
    with pytest.raises(ValueError, match="SCALE_RANGE"):
        RandomZoomShiftFlip((1.5, 0.5), (0, 0), 0)


def test_source_weights_are_respected_statistically():
    sizes, weights = [30, 10, 60], [1.0, 3.0, 1.0]
    factors = source_repeat_factors(sizes, weights)
    sampler = RepeatFactorTrainingSampler(factors, seed=0)
    idx = torch.tensor(list(itertools.islice(iter(sampler), 20000)))
    source = torch.bucketize(idx, torch.tensor([30, 40]), right=True)
    share = torch.bincount(source, minlength=3).double() / len(idx)
    assert torch.allclose(share, torch.tensor([0.2, 0.6, 0.2], dtype=torch.float64), atol=0.015), share
    # without weights every sample is equally likely (plain concatenation)
    assert torch.allclose(source_repeat_factors(sizes, [30, 10, 60]), torch.ones(100, dtype=torch.float64))


def test_loader_mixes_videos_and_pseudo_videos(sources):
    cfg = _cfg(
        [sources["video"], sources["image"]],
        DATASETS__CATEGORY_MAP=sources["map"],
        DATASETS__TRAIN_WEIGHTS=(1.0, 1.0),
        INPUT__SAMPLING_FRAME_NUM=2,
    )
    kinds = []
    for batch in itertools.islice(iter(build_video_train_loader(cfg)), 6):
        for s in batch:
            assert len(s["image"]) == 2 and len(s["instances"]) == 2
            assert all(i.gt_ids.dtype == torch.int64 and i.has("gt_masks") for i in s["instances"])
            kinds.append("image" if s["length"] == 1 else "video")
    assert {"image", "video"} == set(kinds)


def test_image_source_alone_for_stage1(sources):
    cfg = _cfg(
        [sources["image"]], [sources["video"]], DATASETS__CATEGORY_MAP=sources["map"], INPUT__SAMPLING_FRAME_NUM=1
    )
    batch = next(iter(build_video_train_loader(cfg)))
    assert len(batch) == 4 and all(len(s["image"]) == 1 and len(s["instances"][0]) >= 1 for s in batch)
    assert all(s["instances"][0].gt_classes.max() < 5 for s in batch)


def test_cli_registers_coco_format_json_as_an_image_source(sources, tmp_path):
    from train_net import register_cli_datasets

    name = _uid("cli_coco")
    register_cli_datasets([f"{name}={sources['coco_json']}:{os.path.join(sources['root'], 'train', 'JPEGImages')}"])
    assert MetadataCatalog.get(name).thing_classes == [f"img_{n}" for n in SYN_NAMES]  # known before loading
    cfg = _cfg([sources["video"], name], DATASETS__CATEGORY_MAP=sources["map"])
    assert [len(r) for _, r in get_train_sources(cfg)][1] > 0
    bad = tmp_path / "neither.json"
    bad.write_text(json.dumps({"categories": []}))
    with pytest.raises(DatasetFormatError, match="neither.json.*neither 'videos'"):
        register_cli_datasets([f"{_uid('x')}={bad}:{tmp_path}"])


def test_coco_2017_train_under_detectron2_datasets_feeds_the_video_loader(tmp_path):
    """detectron2's own coco_2017_train registration (coco/annotations/instances_train2017.json) + the 2019 map."""
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "train2017").mkdir()
    ids = {c["name"]: c["id"] for c in COCO_CATEGORIES if c["isthing"]}
    img = np.full((40, 60, 3), 120, np.uint8)
    for i in (1, 2):
        cv2.imwrite(str(coco / "train2017" / f"{i:012d}.jpg"), img)

    def box(x, y):
        return [[x, y, x + 15, y, x + 15, y + 15, x, y + 15]]

    anns = [(1, "car", box(2, 2)), (1, "mouse", box(30, 2)), (1, "person", box(2, 20)), (2, "chair", box(5, 5))]
    data = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": 40, "width": 60} for i in (1, 2)],
        "annotations": [
            {
                "id": k + 1,
                "image_id": i,
                "category_id": ids[n],
                "segmentation": s,
                "area": 225.0,
                "bbox": [s[0][0], s[0][1], 15, 15],
                "iscrowd": 0,
            }
            for k, (i, n, s) in enumerate(anns)
        ],
        "categories": [{"id": c["id"], "name": c["name"]} for c in COCO_CATEGORIES if c["isthing"]],
    }
    (coco / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    code = (
        "import json, projects.data\n"
        "from detectron2.config import get_cfg\n"
        "from projects.config import add_video_config\n"
        "from projects.data import get_train_sources, PseudoVideoMapper\n"
        "cfg = get_cfg(); add_video_config(cfg)\n"
        "cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ('coco_2017_train',), ('ytvis_2019_val',)\n"
        "cfg.DATASETS.CATEGORY_MAP = 'coco_to_ytvis_2019'; cfg.INPUT.MIN_SIZE_TRAIN = (40,)\n"
        "(_, recs), = get_train_sources(cfg)\n"
        "s = PseudoVideoMapper(cfg, True, seed=0)(recs[0])\n"
        "print(json.dumps([[sorted(a['category_id'] for a in r['annotations']) for r in recs],\n"
        "                  [i.gt_ids.tolist() for i in s['instances']]]))\n"
    )
    out = run_python(["-W", "ignore", "-c", code], DETECTRON2_DATASETS=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    cats, frame_ids = json.loads(out.stdout.strip().splitlines()[-1])
    names = [c["name"] for c in YTVIS_2019_CATEGORIES]
    assert cats == [sorted([names.index("sedan"), names.index("person")])]  # mouse dropped, chair-only image dropped
    assert len(frame_ids) == 2 and all(set(f) <= {1, 2} for f in frame_ids)


def test_the_model_class_list_is_the_video_datasets_when_an_image_source_comes_first(sources):
    from projects.data.model_metadata import training_metadata

    meta = training_metadata(_cfg([sources["image"], sources["video"]]))
    assert meta["dataset"] == sources["video"] and meta["thing_classes"] == SYN_NAMES
