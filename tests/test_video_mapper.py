import random

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import transforms as T

from projects.config import add_video_config
from projects.data import DatasetFormatError, VideoDatasetMapper, VideoTestDatasetMapper, load_ytvis_json
from projects.data.frame_sampling import sample_frame_indices
from tests.ytvis_fixtures import write_tiny_ytvis


def _cfg(num_frames=2, frame_range=5, consecutive=False):
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.INPUT.MIN_SIZE_TRAIN = (64,)
    cfg.INPUT.MAX_SIZE_TRAIN = 1000
    cfg.INPUT.MIN_SIZE_TEST = 48
    cfg.INPUT.MAX_SIZE_TEST = 1000
    cfg.INPUT.SAMPLING_FRAME_NUM = num_frames
    cfg.INPUT.SAMPLING_FRAME_RANGE = frame_range
    cfg.INPUT.SAMPLING_CONSECUTIVE = consecutive
    return cfg


def test_pair_sampling_respects_gap():
    rng = random.Random(0)
    gaps = set()
    for _ in range(500):
        k, t = sample_frame_indices(20, 2, 5, False, rng)
        assert 0 <= k < t < 20
        gaps.add(t - k)
    assert gaps == {1, 2, 3, 4}  # gap < SAMPLING_FRAME_RANGE


def test_clip_sampling_is_consecutive_and_padded_for_short_videos():
    rng = random.Random(0)
    for _ in range(50):
        idx = sample_frame_indices(30, 10, 5, True, rng)
        assert idx == list(range(idx[0], idx[0] + 10))
    assert sample_frame_indices(4, 10, 5, True, rng) == [0, 1, 2, 3, 3, 3, 3, 3, 3, 3]
    assert sample_frame_indices(1, 2, 5, False, rng) == [0, 0]


def test_train_mapper_one_augmentation_and_consistent_ids(tmp_path):
    json_file, image_root, _ = write_tiny_ytvis(str(tmp_path), length=6, null_frame=None)
    video = load_ytvis_json(json_file, image_root)[0]
    cfg = _cfg(num_frames=3)
    mapper = VideoDatasetMapper(cfg, is_train=True)
    mapper.augmentations = T.AugmentationList([T.ResizeShortestEdge(64, 1000), T.RandomFlip(prob=1.0)])
    out = mapper(video)
    assert len(out["image"]) == len(out["instances"]) == len(out["frame_idx"]) == 3
    for img, inst, t in zip(out["image"], out["instances"], out["frame_idx"]):
        assert img.shape == (3, 64, 96) and img.dtype == torch.uint8
        assert inst.image_size == (64, 96)
        assert inst.gt_ids.tolist() == [1, 2] and inst.gt_classes.tolist() == [0, 1]
        # the cube at x in [2+2t, 14+2t) of 48 px, flipped and scaled by 2: x in [96-2*(14+2t), 96-2*(2+2t))
        box = inst.gt_boxes.tensor[0].tolist()
        assert box == pytest.approx([96 - 2 * (14 + 2 * t), 8, 96 - 2 * (2 + 2 * t), 32], abs=1e-3)
        mask = inst.gt_masks.tensor[0]
        assert mask[8:32, 96 - 2 * (14 + 2 * t) : 96 - 2 * (2 + 2 * t)].all() and mask.sum() == 24 * 24


def test_invisible_objects_absent_from_frame_instances(tmp_path):
    json_file, image_root, _ = write_tiny_ytvis(str(tmp_path), length=4, null_frame=2)
    video = load_ytvis_json(json_file, image_root)[0]
    mapper = VideoDatasetMapper(_cfg(num_frames=4, consecutive=True), is_train=True)
    out = mapper(video)
    assert out["frame_idx"] == [0, 1, 2, 3]
    assert [i.gt_ids.tolist() for i in out["instances"]] == [[1, 2], [1, 2], [1], [1, 2]]


def test_test_mapper_is_lazy_and_resizes(tmp_path):
    json_file, image_root, _ = write_tiny_ytvis(str(tmp_path), length=5)
    video = load_ytvis_json(json_file, image_root)[0]
    out = VideoTestDatasetMapper(_cfg())(video)
    frames = out["image"]
    assert len(frames) == 5 and out["length"] == 5 and "instances" not in out
    assert frames[4].shape == (3, 48, 72)
    assert len(list(frames)) == 5


def test_missing_and_corrupt_frames_name_the_file(tmp_path):
    json_file, image_root, _ = write_tiny_ytvis(str(tmp_path), length=3)
    video = load_ytvis_json(json_file, image_root)[0]
    frames = VideoTestDatasetMapper(_cfg())(video)["image"]
    with open(video["file_names"][1], "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(DatasetFormatError, match="cannot decode frame") as err:
        frames[1]
    assert video["file_names"][1] in str(err.value)
    import os

    os.remove(video["file_names"][2])
    with pytest.raises(DatasetFormatError, match="frame file does not exist"):
        frames[2]
    cfg = _cfg(num_frames=3, consecutive=True)
    cfg.INPUT.ON_BAD_FRAME = "fail"  # the default "skip" is tested in tests/test_faults_engine.py
    mapper = VideoDatasetMapper(cfg, is_train=True)
    with pytest.raises(DatasetFormatError):
        mapper(video)
