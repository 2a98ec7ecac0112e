"""The converter's entries for the release's appearance / scoring / mask modules (vis_rgnn/convert_release.py
``_TRACKER_KEYS``): ``appnet``, ``detection_descriptor_extractor``, ``track_descriptor.out_layers`` + ``init_var``,
``track_module``, on a synthetic checkpoint with the release's key layout and shapes
(tests/data/rgnnvis_release_layout.txt), loaded into the release config's stage-2 model."""

import os
import pickle

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer

import vis_rgnn.meta_arch  # noqa: F401
from tests.rgnn_fixtures import build_release_model
from vis_rgnn.convert_release import convert_release_state_dict, release_key

torch.set_num_threads(1)
LAYOUT = os.path.join(os.path.dirname(__file__), "data", "rgnnvis_release_layout.txt")
MINE = ("appnet.", "detection_descriptor_extractor.", "track_descriptor.out_layers.", "track_module.")


def _mine(key):
    return key.startswith(MINE) or key == "track_descriptor.init_var"


def _net():
    """Every key of the release's layout with its shape (random small tensors, zeros if big)."""
    g = torch.Generator().manual_seed(3)
    net = {}
    with open(LAYOUT) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            key, shape, dtype = line.split()
            dims = () if shape == "-" else tuple(int(d) for d in shape.split("x"))
            if dtype == "int64":
                net[key] = torch.tensor(7)
            elif int(np.prod(dims)) <= 200_000:
                net[key] = torch.randn(dims, generator=g)
            else:
                net[key] = torch.zeros(dims)
    return net


@pytest.fixture(scope="module")
def stage2_model():
    return build_release_model(2).eval()


def test_ported_tracker_keys_map_to_the_release_configs_model(stage2_model, tmp_path):
    net = _net()
    shapes = {k: tuple(v.shape) for k, v in stage2_model.state_dict().items()}
    assert sum(_mine(k) for k in net) == 25
    out, summary = convert_release_state_dict(net, shapes)
    assert summary["tracker_dropped"] == 0 and int(out["rgnn_stage"]) == 2
    with open(tmp_path / "c.pkl", "wb") as f:
        pickle.dump({"model": out, "__author__": "test", "matching_heuristics": False}, f)
    DetectionCheckpointer(stage2_model).load(str(tmp_path / "c.pkl"))
    sd = stage2_model.state_dict()
    eq = torch.testing.assert_close
    eq(sd["appearance.convs.res4.weight"], net["appnet.feat_nets.bb_feats_s8.0.weight"])
    eq(sd["appearance.convs.res5.bias"], net["appnet.feat_nets.bb_feats_s16.0.bias"])
    eq(sd["appearance.residual.fc2.weight"], net["detection_descriptor_extractor.appearance_layers.layers.2.weight"])
    eq(sd["appearance.residual.fc3.bias"], net["detection_descriptor_extractor.appearance_layers.layers.4.bias"])
    eq(sd["tracker.appearance_update.alpha.weight"], net["track_descriptor.out_layers.mean_eta.weight"])
    eq(sd["tracker.appearance_update.beta.bias"], net["track_descriptor.out_layers.var_eta.bias"])
    eq(sd["tracker.appearance_update.var_new.weight"], net["track_descriptor.out_layers.var_new.weight"])
    eq(sd["tracker.appearance_update.init_var"], net["track_descriptor.init_var"])
    # lbscores: 41 outputs, background first -> ours background last
    lb_w, lb_b = net["track_descriptor.out_layers.lbscores.weight"], net["track_descriptor.out_layers.lbscores.bias"]
    eq(sd["tracker.scoring.cls.weight"][:40], lb_w[1:])
    eq(sd["tracker.scoring.cls.weight"][40], lb_w[0])
    eq(sd["tracker.scoring.cls.bias"], torch.cat([lb_b[1:], lb_b[:1]]))
    # re-weighting CNN: the release's input channels [map, box, 16 embedding] -> ours [16 embedding, map, box]
    w = net["track_module.seg_layers.0.weight"]
    eq(sd["tracker.mask_reweighting.conv1.weight"], torch.cat([w[:, 2:18], w[:, 0:2]], dim=1))
    eq(sd["tracker.mask_reweighting.conv2.weight"], net["track_module.seg_layers.2.weight"])
    eq(sd["tracker.mask_reweighting.embed.bias"], net["track_module.embedding_to_seg_layers.0.bias"])


def test_heads_keys_map_by_name():
    assert release_key("track_descriptor.init_var") == "tracker.appearance_update.init_var"
    assert release_key("track_descriptor.init_var_background") == "tracker.empty_init_var"
