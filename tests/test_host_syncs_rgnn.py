"""RGNN-VIS's online step reads at most 4 values back from the device per frame, counted with
the torch profiler (projects.utils.host_syncs) on frames 2.. with many detections and tracks."""

import pytest
import torch

from benchmarks.host_syncs_rgnn import measure_rgnn
from tests.rgnn_step_video import build, step_host_syncs, video


def test_measure_rgnn_smoke_at_most_4_syncs_per_frame():
    torch.set_num_threads(1)
    r = measure_rgnn("cpu", smoke=True, frames=4)
    assert r["frames"] == 3 and r["tracks"] > 0 and r["outputs"] > 0  # the step did real work
    assert r["syncs_per_frame"] <= 4, r["per_op"]


@pytest.mark.parametrize("variant", ["gnn_learned", "heuristic_average", "stage1"])
def test_every_association_and_stage_at_most_4_syncs_per_frame(variant):
    torch.set_num_threads(1)
    counts, outputs = step_host_syncs(build(variant), video())
    assert outputs > 0
    assert max(counts) <= 4, counts
