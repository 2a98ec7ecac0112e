"""``experiments/vis_stg_graph_degree.py``: the recorded pixel degrees against a count of the graph's edge lists,
the ratios |F̂_t| / |F_t| against hand-computed messages, and eq. (2)'s sum = degree × the mean's message."""

import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from experiments.vis_stg_graph_degree import DegreeRecorder, format_tables, measure, setup, summarise
from projects.data.synthetic import generate_synthetic_vis
from vis_stg.graph import GraphUpdate

torch.set_num_threads(1)

# 3 reference instances, 4 pixel nodes. Valid edges per pixel: 0 -> 1, 1 -> 2 (+1 masked), 2 -> 0 (1 masked),
# 3 -> 4. Pixel 2 has no edge that exists: not a touched node.
SRC = torch.tensor([0, 0, 1, 2, 1, 0, 0, 1, 2, 2])
DST = torch.tensor([0, 1, 1, 1, 2, 3, 3, 3, 3, 0])
MASK = torch.tensor([True, True, True, False, False, True, True, True, True, False])
DEGREE = {0: 1, 1: 2, 3: 4}


def _run(update, h_pix, aggregations=None):
    torch.manual_seed(1)
    h_ref = torch.randn(3, h_pix.shape[1])
    with DegreeRecorder(update, aggregations) as rec, torch.no_grad():
        update(h_ref, h_pix, SRC, DST, edge_mask=MASK, final_ref=False)
    (record,) = rec.records["train"]
    return record


def test_degrees_and_hand_computed_ratios_of_a_constant_message():
    """N_v's output layer W = 0, bias b: every edge's message is b, so after L iterations the mean gives
    F̂ = F + L·b and the sum F̂ = F + L·d·b at a pixel of degree d."""
    update = GraphUpdate(dim=2, hidden_dim=4, num_iters=2, aggregation="mean")
    nn.init.zeros_(update.node_mlp[-1].weight)
    update.node_mlp[-1].bias.data = torch.tensor([1.0, 0.0])
    h_pix = torch.tensor([[3.0, 4.0], [0.0, 2.0], [5.0, 5.0], [-6.0, 8.0]])
    record = _run(update, h_pix)
    assert record["degree"].tolist() == [1, 2, 4]  # the touched pixels 0, 1, 3 in order
    for i, (pixel, d) in enumerate(DEGREE.items()):
        x, y = h_pix[pixel].tolist()
        norm = math.hypot(x, y)
        assert record["ratio"]["mean"][i] == pytest.approx(math.hypot(x + 2, y) / norm, rel=1e-6)
        assert record["ratio"]["sum"][i] == pytest.approx(math.hypot(x + 2 * d, y) / norm, rel=1e-6)
        assert record["message"]["mean"][i] == pytest.approx(2 / norm, rel=1e-6)
        assert record["message"]["sum"][i] == pytest.approx(2 * d / norm, rel=1e-6)
    stats = summarise({"train": [record], "test": []})["train"]
    assert stats["bins"]["1"]["ratio"]["mean"] == pytest.approx(math.hypot(5, 4) / 5, rel=1e-6)
    assert stats["bins"]["3-4"]["pixels"] == 1 and stats["bins"]["5-8"]["pixels"] == 0
    assert stats["max"] == 4 and stats["share_gt1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="sum_scaled"):
        DegreeRecorder(update, ["sum_scaled"])


def test_one_iteration_sum_message_is_degree_times_the_mean_message():
    """graph.py: "mean" scales the aggregated hidden activations Σu_e by 1/d and counts N_v's output bias once,
    so at the first iteration (same u_e) the sum's message W·Σu_e + d·b is d × the mean's (W·Σu_e + d·b) / d."""
    torch.manual_seed(0)
    update = GraphUpdate(dim=8, hidden_dim=16, num_iters=1, aggregation="sum")
    nn.init.normal_(update.node_mlp[-1].weight)
    nn.init.normal_(update.node_mlp[-1].bias)
    record = _run(update, torch.randn(4, 8))
    np.testing.assert_allclose(record["message"]["sum"], record["degree"] * record["message"]["mean"], rtol=1e-5)
    assert (record["message"]["sum"] > 0).all()


def _oracle(model):
    """Degrees counted from the edge lists the graph returns: Counter of each level's (valid) target cells."""
    counts = {"train": [], "test": []}

    def training_hook(module, args, output):
        for edges in output[1]:
            counts["train"] += Counter(edges.dst.tolist()).values()

    online = model.graph.forward_online

    def forward_online(*args, **kwargs):
        fused, edges = online(*args, **kwargs)
        for e in edges:
            counts["test"] += Counter(e.dst[e.valid].tolist()).values()
        return fused, edges

    model.graph.register_forward_hook(training_hook)
    model.graph.forward_online = forward_online
    return counts


def test_tiny_model_degrees_equal_the_edge_lists_and_sum_is_degree_times_mean(tmp_path):
    for split, seed in (("train", 0), ("val", 1)):
        generate_synthetic_vis(tmp_path, 2, 4, 64, 96, seed=seed, split_name=split)
    argv = [
        "--config-file", "configs/vis_stg/synthetic_R18.yaml", "--train-batches", "2", "--videos", "2",
        "--dataset", f"deg_train={tmp_path}/train.json:{tmp_path}/train/JPEGImages",
        "--dataset", f"deg_val={tmp_path}/val.json:{tmp_path}/val/JPEGImages",
        "MODEL.WEIGHTS", "", "OUTPUT_DIR", str(tmp_path / "out"), "DATASETS.TRAIN", "('deg_train',)",
        "DATASETS.TEST", "('deg_val',)", "SOLVER.IMS_PER_BATCH", "2", "INPUT.MIN_SIZE_TRAIN", "(64,)",
        "INPUT.MAX_SIZE_TRAIN", "96", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96",
        "MODEL.VIS_STG.GRAPH.NUM_ITERS", "1", "MODEL.VIS_STG.GRAPH.AGGREGATION", "mean",
        # random weights score ~0.01: let every detection become a reference so that the online graph runs
        "MODEL.VIS_STG.INFERENCE.SCORE_THRESH", "0.0", "MODEL.VIS_STG.TRACK.REF_SCORE_THRESH", "0.0",
    ]  # fmt: skip
    cfg, model, train, test = setup(argv)
    nn.init.normal_(model.graph.update.node_mlp[-1].weight, std=0.1)  # zero-initialised: F̂_t = F_t otherwise
    nn.init.normal_(model.graph.update.node_mlp[-1].bias, std=0.1)
    oracle = _oracle(model)
    stats, records = measure(model, train, test)
    for phase in ("train", "test"):
        recorded = np.concatenate([r["degree"] for r in records[phase]])
        assert sorted(recorded.tolist()) == sorted(oracle[phase]) and len(recorded) > 0
        assert stats[phase]["max"] == max(oracle[phase]) and stats[phase]["pixels"] == len(oracle[phase])
        assert stats[phase]["mean"] == pytest.approx(np.mean(oracle[phase]))
        for r in records[phase]:
            assert set(r["ratio"]) == {"mean", "sum"}
            np.testing.assert_allclose(r["message"]["sum"], r["degree"] * r["message"]["mean"], rtol=1e-4, atol=1e-6)
    assert stats["test"]["max"] > 1 and sum(b["pixels"] for b in stats["test"]["bins"].values()) == len(oracle["test"])
    table = format_tables(stats)
    assert "| train | 6 |" in table  # 3 levels × 2 batches
    assert "| >16 |" in table and "train mean | train sum" in table
