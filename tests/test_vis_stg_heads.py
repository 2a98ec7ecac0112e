"""VisSTG heads: target assignment, CenterNet detection (§3.3), CondInst masks and kernel warping (§3.4),
embedding baseline; shapes, gradients and hand-checked values."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.structures import Boxes, Instances
from torchvision.ops import deform_conv2d

from vis_stg.detection_head import CenterNetHead
from vis_stg.embedding_head import EmbeddingHead
from vis_stg.kernel_warp import KernelWarp, deform_conv2d_by_sampling
from vis_stg.losses import dice_loss, heatmap_focal_loss
from vis_stg.mask_head import Controller, DynamicMaskHead, MaskBranch
from vis_stg.targets import assign_centers, expand_positives, gather_at_cells

torch.set_num_threads(1)
STRIDES, SHAPES = [8, 16], [(8, 12), (4, 6)]


def _instances(boxes, classes, ids, size=(64, 96)):
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).view(-1, 4))
    inst.gt_classes = torch.tensor(classes, dtype=torch.long)
    inst.gt_ids = torch.tensor(ids, dtype=torch.long)
    return inst


def test_assign_centers_levels_cells_offsets_and_heatmaps():
    small = [10.0, 12.0, 30.0, 28.0]  # 20x16 -> P3, centre (20, 20) -> cell (2, 2), offset (0.5, 0.5)
    large = [40.0, 8.0, 90.0, 60.0]  # 50x52 -> P4, centre (65, 34) -> cell (4, 2)
    t = assign_centers(
        [_instances([small, large], [1, 0], [7, 9]), _instances([], [], [])],
        SHAPES,
        STRIDES,
        sizes_of_interest=[32],
        num_classes=2,
        level_assignment="max_side",
    )
    assert t.level.tolist() == [0, 1] and t.cells.tolist() == [[2, 2], [4, 2]]
    torch.testing.assert_close(t.offsets, torch.tensor([[0.5, 0.5], [0.0625, 0.125]]))
    torch.testing.assert_close(t.sizes, torch.tensor([[2.5, 2.0], [3.125, 3.25]]))
    assert t.ids.tolist() == [7, 9] and t.batch_idx.tolist() == [0, 0]
    assert [h.shape for h in t.heatmaps] == [(2, 2, 8, 12), (2, 2, 4, 6)]
    assert t.heatmaps[0][0, 1, 2, 2] == 1 and t.heatmaps[1][0, 0, 2, 4] == 1
    assert t.heatmaps[0].eq(1).sum() == 1 and t.heatmaps[1].eq(1).sum() == 1 and t.heatmaps[0][1].sum() == 0
    assert t.flat_cells(SHAPES).tolist() == [2 * 12 + 2, 2 * 6 + 4]
    with pytest.raises(ValueError):
        assign_centers([_instances([small], [0], [1])], SHAPES, STRIDES, sizes_of_interest=[], num_classes=2)


def test_expand_positives_and_gather_at_cells():
    t = assign_centers([_instances([[0.0, 0.0, 10.0, 10.0]], [0], [1])], SHAPES, STRIDES, [32], 1)
    idx, cells = expand_positives(t, radius=1, shapes=SHAPES)
    assert idx.tolist() == [0] * 4 and sorted(map(tuple, cells.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    maps = [torch.arange(2 * 8 * 12.0).view(1, 2, 8, 12), torch.zeros(1, 2, 4, 6)]
    out = gather_at_cells(maps, torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([[3, 1], [0, 0]]))
    assert out.tolist() == [[15.0, 96.0 + 15.0], [0.0, 0.0]]


def test_losses_values():
    target = torch.zeros(1, 1, 3, 3)
    target[0, 0, 1, 1] = 1
    perfect = torch.full((1, 1, 3, 3), -20.0)
    perfect[0, 0, 1, 1] = 20.0
    assert heatmap_focal_loss(perfect, target) < 1e-6
    assert heatmap_focal_loss(torch.zeros(1, 1, 3, 3), target) > 0.1
    mask = torch.zeros(2, 4, 4)
    mask[:, :2] = 1
    assert dice_loss(mask * 40 - 20, mask).max() < 1e-3 and dice_loss(-mask * 40 + 20, mask).min() > 0.9


def test_centernet_head_shapes_losses_gradients_and_decoding():
    torch.manual_seed(0)
    head = CenterNetHead(16, num_classes=3, num_convs=1, conv_dim=16)
    feats = [torch.randn(2, 16, h, w, requires_grad=True) for h, w in SHAPES]
    heat, size, offset = head(feats)
    assert [h.shape for h in heat] == [(2, 3, 8, 12), (2, 3, 4, 6)] and size[1].shape == (2, 2, 4, 6)
    torch.testing.assert_close(heat[0].sigmoid().mean(), torch.tensor(0.1), atol=0.02, rtol=0)  # prior
    t = assign_centers(
        [_instances([[10.0, 12.0, 30.0, 28.0]], [1], [1]), _instances([[40.0, 8.0, 90.0, 60.0]], [2], [2])],
        SHAPES,
        STRIDES,
        [32],
        3,
    )
    losses = head.losses(heat, size, offset, t)
    assert set(losses) == {"loss_center", "loss_size", "loss_offset"}
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in head.parameters()) and feats[0].grad is not None

    # Decoding: a peak of class 2 at P4 cell (4, 2) with offset (0.25, 0.5) and size (2, 3) cells.
    heat = [torch.full((1, 3, h, w), -10.0) for h, w in SHAPES]
    heat[1][0, 2, 2, 4] = 3.0
    heat[0][0, 0, 5, 5] = -5.0  # below the score threshold
    sizes = [torch.zeros(1, 2, h, w) for h, w in SHAPES]
    offsets = [torch.zeros(1, 2, h, w) for h, w in SHAPES]
    sizes[1][0, :, 2, 4] = torch.tensor([2.0, 3.0])
    offsets[1][0, :, 2, 4] = torch.tensor([0.25, 0.5])
    padded, converged = CenterNetHead.inference(heat, sizes, offsets, STRIDES, score_thresh=0.05, max_detections=10)
    assert bool(converged) and len(padded) == 10 and padded.valid.tolist() == [True] + [False] * 9
    dets = padded[padded.valid]
    assert len(dets) == 1 and dets.level.tolist() == [1] and dets.classes.tolist() == [2]
    assert dets.cells.tolist() == [[4, 2]]
    torch.testing.assert_close(dets.boxes, torch.tensor([[68.0 - 16, 40.0 - 24, 68.0 + 16, 40.0 + 24]]))


def test_dynamic_mask_head_has_169_params_and_matches_explicit_convs():
    head = DynamicMaskHead(in_channels=8, channels=8, num_layers=3, feat_stride=8, out_stride=4)
    assert head.num_params == 169
    torch.manual_seed(0)
    feats = torch.randn(2, 8, 5, 7)
    kernels = torch.randn(3, 169, requires_grad=True)
    loc = torch.tensor([[12.0, 20.0], [30.0, 4.0], [0.0, 0.0]])
    batch_idx, soi = torch.tensor([0, 1, 1]), torch.tensor([64.0, 64.0, 128.0])
    logits = head(feats, kernels, loc, batch_idx, soi)
    assert logits.shape == (3, 10, 14)
    logits.sum().backward()
    assert kernels.grad is not None

    # Reference: CondInst's layout (all weights, then all biases) as 1x1 convs on [P_xy, F^d].
    k = kernels.detach()[1]
    ys, xs = (torch.arange(5.0) + 0.5) * 8, (torch.arange(7.0) + 0.5) * 8
    rel = torch.stack([(30.0 - xs).view(1, -1).expand(5, 7), (4.0 - ys).view(-1, 1).expand(5, 7)]) / 64.0
    x = torch.cat([rel, feats[1]])[None]
    w0, w1, w2 = k[:80].view(8, 10, 1, 1), k[80:144].view(8, 8, 1, 1), k[144:152].view(1, 8, 1, 1)
    b0, b1, b2 = k[152:160], k[160:168], k[168:169]
    ref = F.conv2d(F.relu(F.conv2d(F.relu(F.conv2d(x, w0, b0)), w1, b1)), w2, b2)
    ref = F.interpolate(ref, scale_factor=2, mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(logits[1].detach(), ref, atol=1e-5, rtol=1e-5)
    assert head(feats, kernels[:0], loc[:0], batch_idx[:0], soi[:0]).shape == (0, 10, 14)


def test_controller_and_mask_branch_shapes_and_gradients():
    controller, branch = Controller(16, 169, num_convs=1, conv_dim=16), MaskBranch(16, 8, num_convs=1, conv_dim=16)
    feats = [torch.randn(2, 16, h, w) for h, w in SHAPES]
    thetas = controller(feats)
    assert [t.shape for t in thetas] == [(2, 169, 8, 12), (2, 169, 4, 6)]
    out = branch(feats[0])
    assert out.shape == (2, 8, 8, 12)
    (sum(t.sum() for t in thetas) + out.sum()).backward()
    assert all(p.grad is not None for p in list(controller.parameters()) + list(branch.parameters()))


@pytest.mark.parametrize("hw", [(5, 7), (1, 6), (6, 1), (1, 1)])
@pytest.mark.parametrize("depthwise", [True, False])
def test_sampling_deform_conv_equals_torchvision(depthwise, hw):
    torch.manual_seed(0)
    x = torch.randn(2, 6, *hw, dtype=torch.float64)
    offset = torch.randn(2, 18, *hw, dtype=torch.float64) * 1.5
    weight = torch.randn(6, 1 if depthwise else 6, 3, 3, dtype=torch.float64)
    bias = torch.randn(6, dtype=torch.float64)
    ref = deform_conv2d(x, offset, weight, bias, padding=1)
    torch.testing.assert_close(deform_conv2d_by_sampling(x, offset, weight, bias), ref, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("impl", ["deform_conv2d", "grid_sample"])
def test_kernel_warp_identity_at_init_shapes_and_gradients(impl):
    torch.manual_seed(0)
    warp = KernelWarp(16, 169, num_convs=1, conv_dim=8, impl=impl)
    theta_k = torch.randn(2, 169, 6, 9, requires_grad=True)
    feat_k, feat_t = torch.randn(2, 16, 6, 9), torch.randn(2, 16, 6, 9)
    assert warp.offsets(feat_k, feat_t).shape == (2, 18, 6, 9)
    out = warp(theta_k, feat_k, feat_t)
    torch.testing.assert_close(out, theta_k)  # θ_warp = θ_k before training
    torch.nn.init.normal_(warp.offset_net[-1].weight, std=0.1)
    out = warp(theta_k, feat_k, feat_t)
    assert out.shape == theta_k.shape and not torch.allclose(out, theta_k)
    out.square().sum().backward()
    assert theta_k.grad is not None and all(p.grad is not None for p in warp.parameters())
    full = KernelWarp(16, 169, num_convs=0, depthwise=False, impl=impl)
    torch.testing.assert_close(full(theta_k, feat_k, feat_t), theta_k)


def test_embedding_head_loss_and_matching():
    head = EmbeddingHead(16, embed_dim=4, num_convs=1, conv_dim=8)
    emb = head([torch.randn(1, 16, 4, 6)])
    assert emb[0].shape == (1, 4, 4, 6)
    e = torch.eye(3) * 5
    # target j=0 matches ref 1 (id 7), target j=1 is new (id 9): perfect embeddings -> low loss.
    loss = EmbeddingHead.losses(
        torch.stack([e[1], -e[0] - e[1]]),
        torch.tensor([0, 0]),
        torch.tensor([7, 9]),
        e[:2],
        torch.tensor([0, 0]),
        torch.tensor([3, 7]),
    )
    assert loss < 0.01
    emb_t = torch.randn(2, 3, requires_grad=True)
    EmbeddingHead.losses(
        emb_t, torch.tensor([0, 1]), torch.tensor([1, 2]), torch.randn(2, 3), torch.tensor([0, 1]), torch.tensor([1, 5])
    ).backward()
    assert emb_t.grad is not None
    prob, valid = EmbeddingHead.match_scores(e[:2], torch.stack([e[1], -e[0] - e[1]]))
    assert prob.shape == (2, 2) and valid.tolist() == [[False, False], [True, False]]


def test_embedding_loss_without_reference_instances():
    # A reference frame with no instance (e.g. the object entered at t): every target is "new".
    emb_t = torch.randn(2, 3, requires_grad=True)
    loss = EmbeddingHead.losses(
        emb_t,
        torch.tensor([0, 0]),
        torch.tensor([1, 2]),
        torch.zeros(0, 3),
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0, dtype=torch.long),
    )
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.0)
    loss.backward()
