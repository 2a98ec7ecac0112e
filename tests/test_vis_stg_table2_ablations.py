"""Table 2's "Concat" fusion and "Offset" association (vis_stg/concat_fusion.py, vis_stg/offset_head.py)."""

import pytest
import torch
from detectron2.modeling import build_model

from tests.vis_stg_fixtures import H, W, _batch, run_moving_box_video, tiny_cfg
from vis_stg.concat_fusion import ConcatFusion
from vis_stg.offset_head import OffsetHead
from vis_stg.targets import CenterTargets

torch.set_num_threads(1)


def test_concat_fusion_starts_as_identity_and_mixes_both_frames():
    torch.manual_seed(0)
    fusion = ConcatFusion(8, 16)
    ft, fp = [torch.randn(2, 8, 6, 7), torch.randn(2, 8, 3, 4)], [torch.randn(2, 8, 6, 7), torch.randn(2, 8, 3, 4)]
    assert all(torch.equal(a, b) for a, b in zip(fusion(ft, fp), ft))  # zero-initialised output conv
    torch.nn.init.normal_(fusion.out.weight, std=0.1)
    moved = fusion(ft, [p + 1 for p in fp])
    assert not torch.allclose(moved[0], fusion(ft, fp)[0])  # the previous frame reaches F̂_t
    with pytest.raises(ValueError, match="levels"):
        fusion(ft, fp[:1])


def _targets(batch_idx, level, cells, offsets, ids):
    n = len(ids)
    return CenterTargets(
        batch_idx=torch.tensor(batch_idx),
        gt_idx=torch.arange(n),
        level=torch.tensor(level),
        cells=torch.as_tensor(cells),
        offsets=torch.as_tensor(offsets, dtype=torch.float32),
        sizes=torch.ones(n, 2),
        classes=torch.zeros(n, dtype=torch.long),
        ids=torch.tensor(ids),
        heatmaps=[],
        centers=torch.zeros(n, 2),  # not read by the offset loss
    )


def test_offset_loss_is_zero_for_the_true_displacement_and_skips_new_objects():
    strides = torch.tensor([8.0, 16.0])
    # frame t: id 1 at level 0 cell (5, 4) + (0.5, 0.5); id 2 (new, no loss) at level 1; id 1 of image 1 too.
    t = _targets([0, 0, 1], [0, 1, 0], [[5, 4], [2, 2], [1, 1]], [[0.5, 0.5], [0.0, 0.0], [0.0, 0.0]], [1, 2, 1])
    # frame k: id 1 of image 0 at level 1 cell (2, 3) + (0.25, 0) -> centre (36, 48) px; id 3 of image 1.
    k = _targets([0, 1], [1, 0], [[2, 3], [4, 4]], [[0.25, 0.0], [0.0, 0.0]], [1, 3])
    # true displacement of id 1 (image 0): (36 - 44, 48 - 36) px = (-1, 1.5) cells of level 0
    maps = [torch.zeros(2, 2, 8, 8, requires_grad=True), torch.zeros(2, 2, 4, 4, requires_grad=True)]
    loss0 = OffsetHead.losses(maps, t, k, strides)
    assert loss0.item() == pytest.approx(2.5)  # |−1| + |1.5|, averaged over the one tracked object
    exact = [torch.zeros(2, 2, 8, 8), torch.zeros(2, 2, 4, 4)]
    exact[0][0, :, 4, 5] = torch.tensor([-1.0, 1.5])
    exact[1][0, :, 2, 2] = 7.0  # the new object's prediction is not supervised
    exact[0][1, :, 1, 1] = 7.0  # nor is an id absent from its own image's frame k
    assert OffsetHead.losses(exact, t, k, strides).item() == pytest.approx(0.0)
    loss0.backward()
    assert maps[0].grad.abs().sum() > 0
    empty = _targets([], [], torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, 2), [])
    assert OffsetHead.losses(maps, empty, k, strides).requires_grad


def test_offset_match_scores_undo_the_motion():
    ref = torch.tensor([[10.0, 10.0, 30.0, 30.0], [60.0, 10.0, 80.0, 30.0]])
    det = torch.tensor([[40.0, 10.0, 60.0, 30.0]])  # ref 0 moved 30 px right: no overlap without the offset
    iou, valid = OffsetHead.match_scores(ref, det, torch.zeros(1, 2), 0.5)
    assert not valid.any()
    iou, valid = OffsetHead.match_scores(ref, det, torch.tensor([[-30.0, 0.0]]), 0.5)
    assert iou[0, 0].item() == pytest.approx(1.0) and valid.tolist() == [[True], [False]]


@pytest.mark.parametrize(
    "overrides,expected,graph_built",
    [
        ({"GRAPH.FUSION_TYPE": "concat", "TRACK.ASSOCIATION": "embedding"}, "loss_embed", False),
        ({"TRACK.ASSOCIATION": "offset"}, "loss_track_offset", True),
        ({"GRAPH.FUSION_TYPE": "concat", "TRACK.ASSOCIATION": "offset"}, "loss_track_offset", False),
    ],
)
def test_table2_variants_train_every_parameter_and_track_online(overrides, expected, graph_built):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(**overrides))
    assert (model.graph is not None) == graph_built
    model.train()
    losses = model(_batch())
    assert expected in losses and "loss_edge" not in losses
    sum(losses.values()).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []  # DDP-safe: nothing unused
    for out in run_moving_box_video(model):
        assert out.pred_masks.shape[1:] == (H, W)
        assert len(set(out.track_ids.tolist())) == len(out)


def test_offset_head_learns_the_displacement():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(**{"TRACK.ASSOCIATION": "offset"}))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(30):
        losses = model(_batch())
        history.append(losses["loss_track_offset"].item())
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    assert sum(history[-3:]) / 3 < 0.7 * sum(history[:3]) / 3


def test_unknown_fusion_type_and_association_are_rejected():
    with pytest.raises(ValueError, match="FUSION_TYPE"):
        build_model(tiny_cfg(**{"GRAPH.FUSION_TYPE": "sum"}))
    with pytest.raises(ValueError, match="ASSOCIATION"):
        build_model(tiny_cfg(**{"TRACK.ASSOCIATION": "motion"}))
