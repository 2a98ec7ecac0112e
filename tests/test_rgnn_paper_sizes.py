"""RGNN-VIS at input sizes that are not multiples of 8 or 32 (issue 21, item 1a).

YOLACT's FPN (the paper configs) does not pad: its prototype grid is 2 ceil(H / 8) x 2 ceil(W / 8) cells at
stride 4, covering up to 7 px more than the image. The stage-2 ground-truth masks must be built on that grid
(not on floor(H / 4) of the image), and inference must paste the grid back with the same geometry. Checked with
the paper's stage-2 config shrunk to an R18-sized network, and with the padded synthetic config.
"""

import math
import os

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances

import vis_rgnn.meta_arch as meta_arch
from tests.rgnn_fixtures import PAPER_STAGE2, small_cfg
from tests.rgnn_fixtures import paper_clip as _clip
from vis_rgnn.meta_arch import grid_logits_to_frame
from vis_rgnn.targets import gt_masks_on_grid

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


SYNTHETIC = "synthetic_R18_stage1.yaml"  # detectron2's FPN: input padded to 32


def _expected_grid(config: str, h: int, w: int):
    if config == PAPER_STAGE2:  # res3 at ceil(x / 8), the protonet doubles it
        return 2 * math.ceil(h / 8), 2 * math.ceil(w / 8)
    return math.ceil(h / 32) * 8, math.ceil(w / 32) * 8


def _train_recording_tracker_inputs(cfg, clips, monkeypatch):
    """A seeded training forward of ``cfg``'s model on ``clips``; returns the model, its losses and the frames /
    targets the tracker's clip losses received."""
    torch.manual_seed(0)
    model = build_model(cfg).train()
    seen = {}
    real = meta_arch.tracker_clip_losses

    def recording(tracker, frames, identities, targets, *args):
        seen.update(frames=frames, targets=targets)
        return real(tracker, frames, identities, targets, *args)

    monkeypatch.setattr(meta_arch, "tracker_clip_losses", recording)
    return model, model(clips), seen


@pytest.mark.parametrize("config", [PAPER_STAGE2, SYNTHETIC])
@pytest.mark.parametrize("size", [(60, 90), (97, 141)])
def test_stage2_trains_at_sizes_not_multiple_of_8(config, size, monkeypatch):
    h, w = size
    # TRAIN_RESIZE [] (the paper configs: their loader gives 480 x 864, INPUT.SCALE_CROP): the odd size reaches
    # the network
    cfg = small_cfg(config, STAGE=2, DETECTOR__SCORE_LOGIT_THRESH=-50.0, TRAIN_INIT_THRESHOLD=-50.0, TRAIN_RESIZE=[])
    model, losses, seen = _train_recording_tracker_inputs(cfg, [_clip(h, w, 2, 0), _clip(h, w, 2, 1)], monkeypatch)
    assert set(losses) == {"loss_class", "loss_mask", "loss_match", "loss_new_track"}
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_mask"] > 0
    sum(losses.values()).backward()
    assert model.tracker.mask_reweighting.conv2.weight.grad.abs().sum() > 0

    grid = _expected_grid(config, h, w)
    assert tuple(seen["frames"][0].masks.shape[-2:]) == grid
    target = seen["targets"][0][0].masks  # (2, gh, gw): the annotation on the prototype grid, cell = 4 px
    assert tuple(target.shape) == (2,) + grid
    expected = torch.zeros(2, *grid)
    expected[0, 2:8, 1:10] = 1.0
    expected[1, 9 : h // 4, 12 : w // 4] = 1.0  # whole cells inside the image
    partial_rows, partial_cols = (h % 4) / 4, (w % 4) / 4  # the image's last, partly covered cell row / column
    if h % 4:
        expected[1, h // 4, 12 : w // 4] = partial_rows
    if w % 4:
        expected[1, 9 : h // 4, w // 4] = partial_cols
    if h % 4 and w % 4:
        expected[1, h // 4, w // 4] = partial_rows * partial_cols
    assert torch.allclose(target, expected)


def test_gt_masks_on_grid_covers_the_given_region():
    inst = Instances((97, 141))
    masks = torch.zeros(1, 97, 141, dtype=torch.bool)
    masks[0, 96, 140] = True  # the last pixel of the image
    inst.gt_masks = BitMasks(masks)
    inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
    grid = gt_masks_on_grid(inst, (104, 144), 4)  # YOLACT's 26 x 36 grid: 7 rows and 3 columns past the image
    assert grid.shape == (1, 26, 36) and grid[0, 24, 35] == 1 / 16 and grid.sum() == 1 / 16
    with pytest.raises(ValueError, match="stride-4 cells"):
        gt_masks_on_grid(inst, (97, 141), 4)


def test_grid_logits_to_frame_keeps_the_grid_geometry():
    """26 x 36 cells at stride 4 for a 97 x 141 input: cell (i, j) is pixels [4i, 4i + 4) x [4j, 4j + 4); the
    cells past the image are cut, not squeezed into it."""
    logits = torch.full((3, 26, 36), -10.0)
    logits[0, 20:] = 10.0  # rows reaching past the image's bottom
    logits[1, :, 30:] = 10.0  # columns reaching past its right side
    logits[2, 2:5] = 10.0
    expected = torch.zeros(3, 97, 141, dtype=torch.bool)
    expected[0, 80:] = expected[1, :, 120:] = expected[2, 8:20] = True
    assert torch.equal(grid_logits_to_frame(logits, 4, (97, 141), (97, 141)) > 0, expected)
    big = grid_logits_to_frame(logits, 4, (97, 141), (194, 282)) > 0  # frame twice the network input
    assert torch.equal(big, expected.repeat_interleave(2, 1).repeat_interleave(2, 2))


@pytest.mark.parametrize("resize", [[], [75, 109]])
def test_paper_inference_at_sizes_not_multiple_of_8(resize):
    low = {"DETECTOR__SCORE_LOGIT_THRESH": -50.0, "INIT_THRESHOLD": -50.0, "INACTIVE_THRESHOLD": -50.0}
    cfg = small_cfg(PAPER_STAGE2, STAGE=2, TEST_RESIZE=resize, **low)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    torch.nn.init.constant_(model.tracker.mask_reweighting.conv2.bias, 5.0)  # untrained: make masks non-empty
    video = _clip(97, 141, 3, 0)
    del video["instances"]
    (result,) = model([video])
    assert result["tracks"], "low thresholds must produce tracks"
    state = model.init_video_state()
    inst = model.step({"image": video["image"][0], "height": 97, "width": 141, "frame_idx": 0}, state)
    assert len(inst) > 0 and inst.pred_masks.shape[1:] == (97, 141) and inst.pred_masks.any()


def test_paper_stage2_trains_at_480x864_from_any_loader_size(monkeypatch):
    """TRAIN_RESIZE [480, 864] (off in the paper configs, whose loader already gives 480 x 864): a 60 x 90 clip
    reaches the tracker on the 120 x 216 prototype grid, its annotations resized with it."""
    low = {"DETECTOR__SCORE_LOGIT_THRESH": -50.0, "TRAIN_INIT_THRESHOLD": -50.0}
    cfg = small_cfg(PAPER_STAGE2, STAGE=2, TRAIN_RESIZE=[480, 864], **low)
    _, losses, seen = _train_recording_tracker_inputs(cfg, [_clip(60, 90, 1, 0)], monkeypatch)
    assert all(torch.isfinite(v) for v in losses.values())
    assert tuple(seen["frames"][0].masks.shape[-2:]) == (120, 216)
    target = seen["targets"][0][0].masks  # object 0: rows 8:32, columns 4:40 of 60 x 90 -> x 8, x 9.6
    assert tuple(target.shape) == (2, 120, 216)
    assert float(target[0].sum()) == pytest.approx(24 * 8 * 36 * 9.6 / 16, rel=0.02)
