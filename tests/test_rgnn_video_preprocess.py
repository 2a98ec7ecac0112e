"""A video frame and the same picture given as a detectron2 image reach RGNN-VIS's network identically
(issue 21, item 1b): a one-frame video through ``RGNNVIS.step`` yields exactly the image call's detections.

The paper configs read BGR (``INPUT.FORMAT``) and feed RGB to the network (``NETWORK_FORMAT``) with YOLACT's
BGR-ordered means / stds; ``TEST_RESIZE`` is set to a size that is not a multiple of 8.
"""

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model

from tests.rgnn_fixtures import small_cfg

torch.set_num_threads(1)
H, W, OUT_H, OUT_W, RESIZE = 60, 90, 120, 180, [75, 109]


def _oracle_input(model, image):
    """The network input written out: resize, normalise in the input's channel order, reverse to RGB."""
    x = F.interpolate(image.float()[None], size=RESIZE, mode="bilinear", align_corners=False)
    return ((x - model.pixel_mean) / model.pixel_std).flip(1)


@pytest.mark.parametrize("config", ["R50_FPN_stage1_120ep_ytvis19.yaml", "R50_FPN_stage2_150ep_ytvis19.yaml"])
def test_one_frame_video_step_gives_the_image_calls_detections(config):
    cfg = small_cfg(config, TEST_RESIZE=RESIZE, DETECTOR__IMAGE_TEST__CONF_THRESH=0.001)  # untrained head
    assert cfg.INPUT.FORMAT == "BGR" and cfg.MODEL.RGNN.NETWORK_FORMAT == "RGB"
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert model.flip_channels
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, H, W), dtype=torch.uint8, generator=g)
    image[0, 10:40, 10:50] = 250  # channels differ: a missing flip changes the input
    image[2, 30:55, 40:85] = 30

    seen = []
    hook = model.backbone.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    (out,) = model([{"image": image, "height": OUT_H, "width": OUT_W}])
    image_dets = out["instances"]

    calls = []
    record = model.detector.register_forward_pre_hook(
        lambda _m, args, kwargs: calls.append((args, kwargs)), with_kwargs=True
    )
    state = model.init_video_state()
    model.step({"image": image, "height": OUT_H, "width": OUT_W, "frame_idx": 0}, state)
    hook.remove(), record.remove()

    image_input, video_input = seen
    assert torch.allclose(image_input, _oracle_input(model, image), atol=1e-5)
    assert torch.equal(video_input, image_input)
    (features, image_sizes), kwargs = calls[0]
    assert image_sizes == [tuple(RESIZE)] and kwargs["input_size"] == tuple(RESIZE)
    # The detections of the step's network pass, post-processed as the image call does, are the image call's.
    (video_dets,) = model.detector.image_inference(features, image_sizes, kwargs["input_size"], [(OUT_H, OUT_W)])
    assert len(image_dets) > 0 and image_dets.image_size == video_dets.image_size == (OUT_H, OUT_W)
    for field in ("pred_boxes", "scores", "pred_classes", "pred_masks"):
        a, b = image_dets.get(field), video_dets.get(field)
        a, b = (a.tensor, b.tensor) if field == "pred_boxes" else (a, b)
        assert torch.equal(a, b), field
