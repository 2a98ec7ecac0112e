"""INPUT.SCALE_CROP: the RGNN-VIS release's random scale + pad / crop to 480 x 864 (projects/data/scale_crop.py).

The transform on synthetic frames, masks and boxes; one draw per clip in the video mapper; the release's rule for
objects the crop removes; and the paper configs' training mapper giving 480 x 864 frames with the jitter active.
"""

import json
import logging
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.data import transforms as T

from projects.config import add_video_config
from projects.data import VideoDatasetMapper, load_ytvis_json
from projects.data.scale_crop import RandomScaleCrop, TorchResizeTransform
from projects.data.video_mapper import build_video_augmentation
from vis_config import get_project_cfg
from vis_rgnn.image_input import warn_train_resize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAD = np.array([104, 116, 124], np.uint8)
PAPER = [
    "R50_FPN_stage1_120ep_ytvis19.yaml",
    "R50_FPN_stage2_150ep_ytvis19.yaml",
    "R101_FPN_stage1_120ep_ytvis19.yaml",
    "R101_FPN_stage2_150ep_ytvis19.yaml",
    "release_R50_ytvis19.yaml",
]


def _write_clip(root, h, w, objects, length, name="clip"):
    """A one-video YouTube-VIS set of PNG frames (exact colours): grey background, ``objects`` =
    {track id: (colour, [box (x0, y0, x1, y1) per frame])} painted as rectangles in id order."""
    image_root = os.path.join(root, name)
    os.makedirs(os.path.join(image_root, "v"), exist_ok=True)
    files, annotations = [], []
    for t in range(length):
        img = np.full((h, w, 3), 90, np.uint8)
        for colour, boxes in objects.values():
            x0, y0, x1, y1 = boxes[t]
            img[y0:y1, x0:x1] = colour
        files.append(f"v/{t:03d}.png")
        cv2.imwrite(os.path.join(image_root, files[-1]), img)
    for k, (_, boxes) in objects.items():
        segs, bboxes = [], []
        for x0, y0, x1, y1 in boxes[:length]:
            m = np.zeros((h, w), np.uint8)
            m[y0:y1, x0:x1] = 1
            rle = mask_util.encode(np.asfortranarray(m))
            segs.append({"size": [h, w], "counts": rle["counts"].decode("ascii")})
            bboxes.append([x0, y0, x1 - x0, y1 - y0])
        annotations.append(
            {"id": k, "video_id": 1, "category_id": 1, "iscrowd": 0, "segmentations": segs, "bboxes": bboxes}
        )
    data = {
        "videos": [{"id": 1, "height": h, "width": w, "length": length, "file_names": files}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "thing"}],
    }
    json_file = os.path.join(root, f"{name}.json")
    with open(json_file, "w") as f:
        json.dump(data, f)
    return load_ytvis_json(json_file, image_root)[0]


def _cfg(frames, size, scale=(0.475, 1.0), reference=(), flip="horizontal"):
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.INPUT.SCALE_CROP.ENABLED = True
    cfg.INPUT.SCALE_CROP.SCALE_RANGE = scale
    cfg.INPUT.SCALE_CROP.SIZE = size
    cfg.INPUT.SCALE_CROP.REFERENCE_SIZE = reference
    cfg.INPUT.RANDOM_FLIP = flip
    cfg.INPUT.SAMPLING_FRAME_NUM = frames
    cfg.INPUT.SAMPLING_CONSECUTIVE = True
    return cfg


def _draw(aug, image, seed):
    np.random.seed(seed)
    return aug.get_transform(image)


# ------------------------------------------------------------------------------------------------- the transform
def test_output_size_and_scale_range_by_seed():
    """One factor s ~ U(0.475, 1) for both axes of the frame fitted into 720 x 1280; always 480 x 864 out; the
    same seed gives the same draw; a 360 x 640 frame is scaled as its 720p version would be."""
    aug = RandomScaleCrop((0.475, 1.0), (480, 864), (720, 1280), PAD)
    frame = np.random.RandomState(0).randint(0, 255, (720, 1280, 3)).astype(np.uint8)
    small = frame[::2, ::2].copy()
    scales = []
    for seed in range(300):
        tf = _draw(aug, frame, seed)
        if seed % 50 == 0:  # the draws are cheap, the resizes not
            out = tf.apply_image(frame)
            assert out.shape == (480, 864, 3) and out.dtype == np.uint8
            assert _draw(aug, small, seed).apply_image(small).shape == (480, 864, 3)
        resize = tf.transforms[0]
        assert isinstance(resize, TorchResizeTransform)
        s_h, s_w = resize.new_h / 720, resize.new_w / 1280
        assert abs(s_h - s_w) < 2 / 720  # one factor: aspect kept
        assert 0.475 - 1 / 720 <= s_h <= 1.0
        scales.append(s_h)
        again = _draw(aug, frame, seed)
        assert str(again) == str(tf)
        assert _draw(aug, small, seed).transforms[0].new_h == resize.new_h  # factor 2 s for 360p
    scales = np.array(scales)
    assert scales.min() < 0.49 and scales.max() > 0.985
    assert abs(scales.mean() - 0.7375) < 0.03  # uniform on [0.475, 1]


def test_small_scales_pad_centred_with_the_mean_and_large_scales_crop():
    """s = 0.5: 360 x 640 centred in 480 x 864 (left / top get the ceil of half the padding), padded with the pixel
    mean; resized as torch's interpolate (bilinear, no antialiasing), i.e. the release's F.interpolate(scale 0.5).
    s = 1: a 480 x 864 window of the frame at a random offset."""
    frame = np.random.RandomState(1).randint(0, 255, (720, 1280, 3)).astype(np.uint8)
    out = _draw(RandomScaleCrop((0.5, 0.5), (480, 864), (720, 1280), PAD), frame, 0).apply_image(frame)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    release = F.interpolate(x, scale_factor=0.5, mode="bilinear")[0].permute(1, 2, 0).numpy()
    assert np.abs(out[60:420, 112:752].astype(np.float32) - release).max() <= 0.5 + 1e-3
    border = np.ones((480, 864), bool)
    border[60:420, 112:752] = False
    assert (out[border] == PAD).all()

    offsets = set()
    for seed in range(20):
        tf = _draw(RandomScaleCrop((1.0, 1.0), (480, 864), (720, 1280), PAD), frame, seed)
        crop = tf.transforms[-1]
        assert isinstance(crop, T.CropTransform) and (crop.w, crop.h) == (864, 480)
        assert 0 <= crop.x0 <= 1280 - 864 and 0 <= crop.y0 <= 720 - 480
        assert (tf.apply_image(frame) == frame[crop.y0 : crop.y0 + 480, crop.x0 : crop.x0 + 864]).all()
        offsets.add((crop.x0, crop.y0))
    assert len(offsets) == 20


def test_masks_and_boxes_follow_the_image():
    """A rectangle object: after the transform its mask (nearest) and box (scaled, shifted) still cover the
    object's pixels in the image, for scales that pad and scales that crop."""
    frame = np.full((720, 1280, 3), 90, np.uint8)
    frame[300:420, 500:780] = (200, 30, 30)
    mask = np.zeros((720, 1280), np.uint8)
    mask[300:420, 500:780] = 1
    aug = RandomScaleCrop((0.475, 1.0), (480, 864), (720, 1280), PAD)
    for seed in range(20):
        tf = _draw(aug, frame, seed)
        img, m = tf.apply_image(frame), tf.apply_segmentation(mask).astype(bool)
        (box,) = tf.apply_box(np.array([[500.0, 300.0, 780.0, 420.0]]))
        ys, xs = np.nonzero(m)
        assert np.abs(np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) - box).max() <= 1.0
        inner = m & np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1)
        assert inner.sum() > 1000 and (img[inner] == (200, 30, 30)).all()


# ---------------------------------------------------------------------------------------------- the video mapper
def test_one_draw_for_all_frames_of_a_clip(tmp_path):
    """Every frame of a clip gets the same scale, crop and flip: the static object's box and mask are the same in
    all frames, and the moving object moves by (its motion) x (the clip's factor) between frames."""
    # inside x 104-216, y 60-120 of the 180 x 320 frame: in every 120 x 216 crop of it at any scale s <= 1
    objects = {
        1: ((200, 30, 30), [(150, 70, 200, 90)] * 4),  # static, 50 px wide
        2: ((30, 200, 30), [(110 + 8 * t, 95, 140 + 8 * t, 115) for t in range(4)]),  # 8 px right per frame
    }
    video = _write_clip(str(tmp_path), 180, 320, objects, 4)
    mapper = VideoDatasetMapper(_cfg(4, (120, 216), reference=(180, 320)), is_train=True)
    boxes0 = set()
    for seed in range(6):
        np.random.seed(seed)
        out = mapper(video)
        assert out is not None and len(out["image"]) == 4
        static = [inst.gt_boxes.tensor[inst.gt_ids == 1][0] for inst in out["instances"]]
        masks = [inst.gt_masks.tensor[inst.gt_ids == 1][0] for inst in out["instances"]]
        assert all(torch.equal(b, static[0]) for b in static) and all(torch.equal(m, masks[0]) for m in masks)
        moving = [inst.gt_boxes.tensor[inst.gt_ids == 2][0] for inst in out["instances"]]
        steps = [float(moving[t + 1][0] - moving[t][0]) for t in range(3)]
        factor = float(static[0][2] - static[0][0]) / 50
        assert all(abs(abs(s) - 8 * factor) < 0.05 for s in steps) and len({s > 0 for s in steps}) == 1
        for img in out["image"]:
            assert img.shape == (3, 120, 216)
        boxes0.add(tuple(static[0].tolist()))
    assert len(boxes0) == 6  # a new draw per clip


def test_objects_whose_box_centre_leaves_the_crop_are_dropped(tmp_path):
    """The release removes an object from a frame when its box centre is outside the crop, even with pixels
    left inside (detectron2's default keeps it); an object whose centre stays inside keeps its clamped box."""
    objects = {
        1: ((200, 30, 30), [(0, 20, 12, 30)]),  # centre x 6: kept iff the crop starts at x0 <= 6
        2: ((30, 200, 30), [(70, 20, 96, 30)]),  # centre x 83: kept iff x0 >= 19 (83 - x0 <= 64), then clamped
    }
    video = _write_clip(str(tmp_path), 64, 96, objects, 1)
    cfg = _cfg(1, (48, 64), scale=(1.0, 1.0), flip="none")
    release, plain = VideoDatasetMapper(cfg, is_train=True), VideoDatasetMapper(cfg, is_train=True)
    plain.drop_centre_outside = False
    seen = set()
    for seed in range(40):
        np.random.seed(seed)
        tf = mapper_transform = release.augmentations(T.AugInput(np.zeros((64, 96, 3), np.uint8)))
        x0 = next(t.x0 for t in mapper_transform.transforms if isinstance(t, T.CropTransform))
        np.random.seed(seed)
        out = release(video)
        np.random.seed(seed)
        out_plain = plain(video)
        # detectron2's rule alone keeps every object with pixels in the crop: 1 while x0 < 12, 2 once x0 > 6
        assert out_plain["instances"][0].gt_ids.tolist() == [k for k, v in ((1, x0 < 12), (2, x0 > 6)) if v]
        if out is None:  # neither object kept (only possible for 6 < x0 < 19)
            assert 6 < x0 < 19
            seen.add("none")
            continue
        inst = out["instances"][0]
        ids = inst.gt_ids.tolist()
        assert (1 in ids) == (x0 <= 6) and (2 in ids) == (x0 >= 19), (x0, ids)
        if 2 in ids:
            box = inst.gt_boxes.tensor[ids.index(2)].tolist()
            assert box == pytest.approx([70 - x0, 20 - tf.transforms[-1].y0, 64, 30 - tf.transforms[-1].y0])
        seen.add((x0 <= 6, x0 >= 19))
    assert {(True, False), (False, True), "none"} <= seen


def test_scale_crop_and_crop_exclusive():
    cfg = _cfg(1, (48, 64))
    cfg.INPUT.CROP.ENABLED = True
    with pytest.raises(ValueError, match="INPUT.SCALE_CROP.ENABLED and INPUT.CROP.ENABLED"):
        build_video_augmentation(cfg, is_train=True)


# ------------------------------------------------------------------------------------------------- the configs
def _project_cfg(name):
    cfg = get_project_cfg()
    cfg.merge_from_file(os.path.join(ROOT, "configs", "vis_rgnn", name))
    return cfg


@pytest.mark.parametrize("name", PAPER)
def test_paper_configs_use_the_release_augmentation(name):
    cfg = _project_cfg(name)
    augs = build_video_augmentation(cfg, is_train=True)
    assert [type(a) for a in augs] == [RandomScaleCrop, T.RandomFlip]
    assert augs[0].output_size == (480, 864) and augs[0].scale_range == (0.475, 1.0)
    assert augs[0].reference_size == (720, 1280) and augs[1].horizontal and augs[1].prob == 0.5
    assert list(cfg.MODEL.RGNN.TRAIN_RESIZE) == [] and not warn_train_resize(cfg)
    assert [type(a) for a in build_video_augmentation(cfg, is_train=False)] == [T.ResizeShortestEdge]


@pytest.mark.parametrize("name", ["synthetic_R18_stage1.yaml", "synthetic_R18_stage2.yaml"])
def test_synthetic_configs_keep_their_resize(name):
    cfg = _project_cfg(name)
    assert not cfg.INPUT.SCALE_CROP.ENABLED
    assert [type(a) for a in build_video_augmentation(cfg, is_train=True)] == [T.ResizeShortestEdge, T.RandomFlip]


def test_paper_stage2_mapper_gives_480x864_clips_with_scale_jitter(tmp_path):
    """The paper's stage-2 training mapper on a 180 x 320 YouTube-VIS clip of 10 frames: every frame 480 x 864
    uint8, the object's size drawn per clip from 4 s x its size (the frame fitted into 720 x 1280, s in
    0.475-1.0), flips in some clips."""
    objects = {1: ((200, 30, 30), [(120 + t, 70, 200 + t, 110) for t in range(10)])}  # 80 x 40 px
    video = _write_clip(str(tmp_path), 180, 320, objects, 10)
    cfg = _project_cfg("R50_FPN_stage2_150ep_ytvis19.yaml")
    mapper = VideoDatasetMapper(cfg, is_train=True)
    widths, directions = [], set()
    for seed in range(8):
        np.random.seed(seed)
        out = mapper(video)
        assert len(out["image"]) == 10
        assert all(img.shape == (3, 480, 864) and img.dtype == torch.uint8 for img in out["image"])
        boxes = torch.stack([inst.gt_boxes.tensor[0] for inst in out["instances"]])
        widths.append(float(boxes[0, 2] - boxes[0, 0]))
        directions.add(bool(boxes[1, 0] > boxes[0, 0]))
    assert all(4 * 0.475 * 80 - 1 <= w <= 4 * 80 + 1 for w in widths)
    assert max(widths) - min(widths) > 40 and directions == {True, False}


def test_train_resize_after_a_varying_size_warns(caplog):
    """The audit's defect: TRAIN_RESIZE after a random shortest-edge resize brings every frame back to one
    scale; that combination warns."""
    cfg = _project_cfg("R50_FPN_stage2_150ep_ytvis19.yaml")
    cfg.INPUT.SCALE_CROP.ENABLED = False
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = (228, 480), "range"
    cfg.MODEL.RGNN.TRAIN_RESIZE = [480, 864]
    with caplog.at_level(logging.WARNING, logger="vis_rgnn.image_input"):
        assert warn_train_resize(cfg)
    assert "cancels the random scale" in caplog.text
    cfg.INPUT.MIN_SIZE_TRAIN = (480,)
    assert not warn_train_resize(cfg)
