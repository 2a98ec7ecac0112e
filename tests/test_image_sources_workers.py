"""Loader workers draw different random samples (frame offsets of videos, pseudo-video transforms)."""

import itertools
import json

import torch
from detectron2.config import get_cfg
from detectron2.data import build_detection_train_loader
from detectron2.data.samplers import TrainingSampler

from projects.config import add_video_config
from projects.data import PseudoVideoMapper, VideoDatasetMapper
from tests.coco_fixtures import write_painted_coco
from tests.ytvis_fixtures import write_tiny_ytvis


def _cfg(num_frames):
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.RANDOM_FLIP = (48,), 96, "none"
    cfg.INPUT.SAMPLING_FRAME_NUM = num_frames
    cfg.INPUT.PSEUDO_VIDEO.SHIFT_RANGE = (0.5, 0.5)
    cfg.DATALOADER.NUM_WORKERS, cfg.SOLVER.IMS_PER_BATCH = 2, 1
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = False
    return cfg


def _draws(cfg, mapper, dataset, key):
    """Samples of ONE dataset item, half from worker 0, half from worker 1 (the sampler repeats index 0)."""
    loader = build_detection_train_loader(
        cfg,
        mapper=mapper,
        dataset=dataset,
        sampler=_Zero(),
        num_workers=2,
        total_batch_size=1,
        aspect_ratio_grouping=False,
    )
    return [key(b[0]) for b in itertools.islice(iter(loader), 8)]


class _Zero(TrainingSampler):
    def __init__(self):
        super().__init__(1, shuffle=False, seed=0)


def test_workers_draw_different_frames_and_transforms(tmp_path):
    json_file, image_root, _ = write_tiny_ytvis(str(tmp_path / "v"), num_videos=1, length=40, null_frame=None)
    from projects.data import load_ytvis_json

    videos = load_ytvis_json(json_file, image_root)
    cfg = _cfg(1)
    frames = _draws(cfg, VideoDatasetMapper(cfg, True), videos, lambda s: s["frame_idx"][0])
    # worker k yields batches k, k+2, ...: identical generators would give pairs of equal draws
    assert frames[0::2] != frames[1::2], frames

    coco_json, coco_root = write_painted_coco(str(tmp_path / "c"), num_images=1)
    from detectron2.data.datasets import load_coco_json

    records = load_coco_json(coco_json, coco_root)  # plain detectron2 dicts: the mapper numbers the objects
    boxes = _draws(
        cfg,
        PseudoVideoMapper(cfg, True),
        records,
        lambda s: json.dumps(torch.round(s["instances"][0].gt_boxes.tensor).tolist()),
    )
    assert boxes[0::2] != boxes[1::2], boxes
