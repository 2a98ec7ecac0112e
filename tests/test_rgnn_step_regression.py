"""Frozen outputs of RGNN-VIS online inference (``RGNNVIS.step``) on a fixed synthetic video with fixed weights.

``tests/data/rgnn_step_outputs.pt`` freezes the per-frame step (detection selection, Fast NMS, association, slot
allocation, the release's tracker): the current code must reproduce it -- track ids and classes exactly, masks
and scores to float tolerance. Last regenerated when this project's alternative tracker paths were removed and
the release's became the only behaviour (new tracks from the detection vertex, recurrent empty track, no slot
eviction, zeroed inactive boxes, max-class confidence, direct mask resize). The weights are a seeded
initialisation with the tracker heads spread (logits on both sides of the thresholds) and few track slots, so that
frames have many detections, inactive tracks, new tracks and new tracks dropped for want of a free slot.

Regenerate (only when the architecture itself changes on purpose): ``python -m tests.test_rgnn_step_regression``.
"""

import os

import numpy as np
import pytest
import torch
from detectron2.structures import BitMasks, Instances

from tests.rgnn_step_video import FRAMES, OUT_H, OUT_W, ROOT, VARIANTS, H, W, build, record_outputs, video

FIXTURE = os.path.join(ROOT, "tests", "data", "rgnn_step_outputs.pt")


def training_clips():
    """Two annotated 4-frame clips (stage-2 training input) whose objects overlap some detections."""
    clips = []
    for seed in (0, 1):
        v = video()
        instances = []
        for t in range(4):
            masks = torch.zeros(3, H, W, dtype=torch.bool)
            masks[0, 8 + 2 * t : 30 + 2 * t, 8:40] = True
            masks[1, 30:60, 56 - 3 * t : 90 - 3 * t] = True
            masks[2, 4 + 5 * seed : 40, 30 + t : 70 + t] = True
            inst = Instances((H, W))
            inst.gt_masks = BitMasks(masks)
            inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
            inst.gt_classes = torch.tensor([0, 2, 1])
            inst.gt_ids = torch.tensor([4, 9, 11])
            instances.append(inst)
        clips.append({"image": v["image"][seed : seed + 4], "instances": instances, "height": H, "width": W})
    return clips


def stage2_losses():
    """Stage-2 training losses and the gradient norm of every tracker parameter group on fixed clips."""
    model = build("gnn_learned").train()
    losses = model(training_clips())
    sum(losses.values()).backward()
    grads = {n: float(p.grad.norm()) for n, p in model.named_parameters() if p.grad is not None}
    return {k: float(v.detach()) for k, v in losses.items()}, grads


def run(variant: str):
    """Per-frame outputs (numpy, CPU) and the video-level tracks of one variant."""
    return record_outputs(build(variant), video(), OUT_H, OUT_W)


@pytest.fixture(scope="module")
def frozen():
    if not os.path.exists(FIXTURE):
        pytest.fail(f"missing fixture {FIXTURE}")
    return torch.load(FIXTURE, weights_only=False)


def test_stage2_training_reproduces_frozen_losses(frozen):
    torch.set_num_threads(1)
    old_losses, old_grads = frozen["stage2_training"]
    losses, grads = stage2_losses()
    assert all(v > 0 for v in old_losses.values()) and len(old_grads) > 10
    assert set(losses) == set(old_losses) and set(grads) == set(old_grads)
    for k in losses:
        assert abs(losses[k] - old_losses[k]) <= 1e-4 * max(1.0, abs(old_losses[k])), (k, losses[k], old_losses[k])
    for k in grads:
        assert abs(grads[k] - old_grads[k]) <= 1e-3 * max(1e-2, abs(old_grads[k])), (k, grads[k], old_grads[k])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_step_reproduces_frozen_outputs(frozen, variant):
    torch.set_num_threads(1)
    old, new = frozen[variant], run(variant)
    assert len(new["frames"]) == FRAMES
    # The fixture is not trivial: tracks exist on most frames and some frames have several.
    assert sum(len(f["ids"]) > 0 for f in old["frames"]) >= FRAMES // 2
    assert max(len(f["ids"]) for f in old["frames"]) >= 3
    for t, (a, b) in enumerate(zip(old["frames"], new["frames"])):
        np.testing.assert_array_equal(a["ids"], b["ids"], err_msg=f"{variant} frame {t}: track ids")
        np.testing.assert_array_equal(a["classes"], b["classes"], err_msg=f"{variant} frame {t}: classes")
        np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-4, atol=1e-5, err_msg=f"{variant} frame {t}")
        diff = np.unpackbits(a["masks"], axis=-1) != np.unpackbits(b["masks"], axis=-1)
        # Masks are thresholded logits: allow a handful of pixels that sit exactly at the decision boundary.
        assert diff.sum() <= max(2, diff.size // 10000), f"{variant} frame {t}: {diff.sum()} mask pixels differ"
    assert len(old["tracks"]) == len(new["tracks"])
    for (s0, c0, n0), (s1, c1, n1) in zip(old["tracks"], new["tracks"]):
        assert c0 == c1 and n0 == n1
        assert abs(s0 - s1) < 1e-4


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = {name: run(name) for name in VARIANTS}
    for name, r in out.items():
        print(
            name,
            [len(f["ids"]) for f in r["frames"]],
            "ids",
            sorted({int(i) for f in r["frames"] for i in f["ids"]}),
            "tracks",
            len(r["tracks"]),
        )
    out["stage2_training"] = stage2_losses()
    print("stage-2 losses", out["stage2_training"][0])
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    torch.save(out, FIXTURE)
    print("wrote", FIXTURE, os.path.getsize(FIXTURE), "bytes")
