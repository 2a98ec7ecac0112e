"""The paper config follows the paper where the synthetic config keeps its tuned values: no score gate on track
starts (§3.6: every unmatched detection starts a track), detection caps crowded scenes do not reach."""

import os

import pytest
import torch
from detectron2.config import get_cfg

from projects.config import add_video_config
from vis_stg import VisSTG, add_vis_stg_config
from vis_stg.online_step import next_references
from vis_stg.state import ReferenceSet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(name):
    cfg = get_cfg()
    add_video_config(cfg)
    add_vis_stg_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "vis_stg", name))
    cfg.MODEL.DEVICE, cfg.MODEL.NUM_CLASSES = "cpu", 40
    return cfg


def _detections(scores):
    n = len(scores)
    return ReferenceSet(
        track_ids=torch.arange(n),
        classes=torch.zeros(n, dtype=torch.long),
        scores=torch.tensor(scores),
        boxes=torch.tensor([[0.0, 0.0, 10.0, 10.0]] * n),
        nodes=[],
        kernels=torch.zeros(n, 169),
        kernel_levels=torch.zeros(n, dtype=torch.long),
        last_seen=torch.full((n,), 3),
    )


@pytest.mark.parametrize("name,starts", [("R50_FPN_24ep_ytvis19.yaml", 2), ("synthetic_R18.yaml", 1)])
def test_which_unmatched_detections_become_reference_instances(name, starts):
    """Two unmatched detections, one at the lowest reportable score: the paper config makes both nodes of the
    next graph (tracks the next frame can continue); the synthetic config keeps its held-out 0.2 gate."""
    cfg = _cfg(name)
    args = VisSTG.from_config(cfg)
    lowest = cfg.MODEL.VIS_STG.INFERENCE.SCORE_THRESH + 1e-3  # detections need a score above SCORE_THRESH
    unmatched = torch.full((2,), -1)
    dets = _detections([lowest, 0.9])
    track = args["track"]
    _, count, _ = next_references(dets, None, unmatched, 3, None, track.ref_score_thresh, track.memory_frames)
    assert int(count) == starts
    assert (cfg.MODEL.VIS_STG.TRACK.REF_SCORE_THRESH == 0.0) == (starts == 2)


def test_paper_config_caps_are_not_the_synthetic_ones():
    paper, synthetic = _cfg("R50_FPN_24ep_ytvis19.yaml").MODEL.VIS_STG, _cfg("synthetic_R18.yaml").MODEL.VIS_STG
    # YouTube-VIS keeps 100 predictions per video; candidates before NMS leave room for cross-level duplicates.
    assert paper.INFERENCE.MAX_DETECTIONS == 100 and paper.INFERENCE.TOPK_CANDIDATES == 300
    assert (synthetic.INFERENCE.MAX_DETECTIONS, synthetic.INFERENCE.TOPK_CANDIDATES) == (30, 100)
    assert synthetic.TRACK.REF_SCORE_THRESH == 0.2
