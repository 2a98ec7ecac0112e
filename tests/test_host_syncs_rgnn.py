"""RGNN-VIS's online step reads at most 4 values back from the device per frame, counted with
the torch profiler (projects.utils.host_syncs) on frames 2.. with many detections and tracks."""

import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from benchmarks.host_syncs_rgnn import measure_rgnn  # noqa: E402
from projects.utils.host_syncs import count_host_syncs  # noqa: E402
from tests.rgnn_step_video import OUT_H, OUT_W, build, video  # noqa: E402


def test_measure_rgnn_smoke_at_most_4_syncs_per_frame():
    torch.set_num_threads(1)
    r = measure_rgnn("cpu", smoke=True, frames=4)
    assert r["frames"] == 3 and r["tracks"] > 0 and r["outputs"] > 0  # the step did real work
    assert r["syncs_per_frame"] <= 4, r["per_op"]


@pytest.mark.parametrize("variant", ["gnn_learned", "heuristic_average", "stage1"])
def test_every_association_and_stage_at_most_4_syncs_per_frame(variant):
    torch.set_num_threads(1)
    model, v = build(variant), video()
    state = model.init_video_state()
    counts, outputs = [], 0
    for t, image in enumerate(v["image"][:4]):
        frame = {"image": image, "height": OUT_H, "width": OUT_W, "frame_idx": t}
        inst, ops = count_host_syncs(lambda frame=frame: model.step(frame, state))
        outputs += len(inst)
        if t > 0:
            counts.append(sum(ops.values()))
    assert outputs > 0
    assert max(counts) <= 4, counts
