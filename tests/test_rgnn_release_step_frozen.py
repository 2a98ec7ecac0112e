"""Frozen outputs of the release configuration's online inference (``configs/vis_rgnn/release_R50_ytvis19.yaml``
shrunk to an R18-sized network, seeded weights) on a fixed synthetic video.

The release config was checked outside this repository against the authors' own ``RGNN.forward`` and results
writer (random release weights converted by ``vis_rgnn.convert_release``; docs/rgnn_release_port.md, "Clip-level
parity"): same detections, assignments, new and inactive tracks, track scores, masks and results. This test keeps
that behaviour from drifting without needing the release: track ids and classes exactly, scores to float
tolerance, masks up to a few boundary pixels, and the video-level results.

Regenerate (only when the release port itself changes on purpose): ``python -m tests.test_rgnn_release_step_frozen``.
"""

import os

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from tests.rgnn_fixtures import ROOT, small_cfg
from tests.rgnn_step_video import record_outputs

FIXTURE = os.path.join(ROOT, "tests", "data", "rgnn_release_step_outputs.pt")
FRAMES, H, W = 5, 75, 109  # not multiples of 8: resized to TEST_RESIZE and back
TEST_RESIZE = [72, 128]
CLS_WEIGHT_SCALE, BACKGROUND_BIAS_SHIFT, MATCH_BIAS, NEW_BIAS, MASK_WEIGHT = 20.0, 3.0, -2.3, -1.4, 200.0


def build():
    cfg = small_cfg("release_R50_ytvis19.yaml", STAGE=2, TEST_RESIZE=TEST_RESIZE)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # spread the seeded heads: detections pass the filter, tracks start and go inactive
        head = model.detector.head
        head.cls.weight.mul_(CLS_WEIGHT_SCALE)
        head.cls.bias.view(-1, 4)[:, 3] -= BACKGROUND_BIAS_SHIFT  # 3 classes + background (last) per anchor
        head.box.weight.mul_(20.0)
        heads = model.tracker.association_heads
        for layer, scale, bias in ((heads.match, 0.3, MATCH_BIAS), (heads.new_track, 0.05, NEW_BIAS)):  # thresholds -2
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * scale)
            layer.bias.fill_(bias)
        conv2 = model.tracker.mask_reweighting.conv2  # masks against the release's background score 10
        conv2.weight.mul_(MASK_WEIGHT)
        conv2.bias.fill_(10.0)
    return model


def video():
    g = torch.Generator().manual_seed(7)
    images = []
    for t in range(FRAMES):
        img = torch.randint(0, 255, (3, H // 3, W // 3), generator=g).float()
        img = torch.nn.functional.interpolate(img[None], size=(H, W), mode="bilinear")[0].to(torch.uint8)
        img[0, 8 + 2 * t : 30 + 2 * t, 8:40] = 250
        img[2, 30:60, 56 - 3 * t : 90 - 3 * t] = 250
        images.append(img)
    return {"video_id": 3, "height": H, "width": W, "length": FRAMES, "image": images}


def run():
    return record_outputs(build(), video(), H, W)


@pytest.fixture(scope="module")
def frozen():
    if not os.path.exists(FIXTURE):
        pytest.fail(f"missing fixture {FIXTURE}")
    return torch.load(FIXTURE, weights_only=False)


def test_release_config_step_reproduces_frozen_outputs(frozen):
    torch.set_num_threads(1)
    new = run()
    assert sum(len(f["ids"]) > 0 for f in frozen["frames"]) >= 2 and len(frozen["tracks"]) >= 10  # not trivial
    for t, (a, b) in enumerate(zip(frozen["frames"], new["frames"])):
        np.testing.assert_array_equal(a["ids"], b["ids"], err_msg=f"frame {t}: track ids")
        np.testing.assert_array_equal(a["classes"], b["classes"], err_msg=f"frame {t}: classes")
        np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-4, atol=1e-5, err_msg=f"frame {t}")
        diff = np.unpackbits(a["masks"], axis=-1) != np.unpackbits(b["masks"], axis=-1)
        assert diff.sum() <= max(2, diff.size // 10000), f"frame {t}: {diff.sum()} mask pixels differ"
    assert len(frozen["tracks"]) == len(new["tracks"])
    for (s0, c0, n0), (s1, c1, n1) in zip(frozen["tracks"], new["tracks"]):
        assert c0 == c1 and n0 == n1 and abs(s0 - s1) < 1e-4


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = run()
    print([len(f["ids"]) for f in out["frames"]], "ids", [f["ids"].tolist() for f in out["frames"]])
    print("tracks", out["tracks"])
    torch.save(out, FIXTURE)
    print("wrote", FIXTURE, os.path.getsize(FIXTURE), "bytes")
