"""Facts of the authors' RGNN-VIS release's appearance / scoring / mask side (rgnnvis/models/rgnn.py
``RGNN.filter_detections``, ``box_to_seg``, ``DetectionDescriptorExtractor``, ``TrackDescriptor._update_appearance``),
each against numbers derived here from the release's formulas."""

import math

import torch
import torch.nn.functional as F
from detectron2.structures import Boxes

from tests.rgnn_fixtures import tiny_release_detector
from vis_rgnn.appearance import AppearanceNetwork, AppearanceUpdate
from vis_rgnn.detector import MASK_SCORE_PAD, box_grid_masks
from vis_rgnn.yolact_anchors import YolactAnchorGenerator

torch.set_num_threads(1)
K = 40


def test_box_grid_masks_sample_linspace():
    """box_to_seg: x_j = j * W / (w - 1) with W = 4 w (here w = 5, W = 20: x = 0, 5, 10, 15, 20), inclusive."""
    m = box_grid_masks(torch.tensor([[5.0, 0.0, 15.0, 4.9]]), (3, 5), 4)  # y = 0, 6, 12
    expected = torch.tensor([[0.0, 1, 1, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    torch.testing.assert_close(m[0], expected)
    # a box touching the grid's last sample includes it (x2 = 20 >= x_4)
    assert box_grid_masks(torch.tensor([[19.9, 11.0, 20.0, 12.0]]), (3, 5), 4)[0].nonzero().tolist() == [[2, 4]]


def _detector(mask_scores):
    gen = YolactAnchorGenerator([[24], [48], [96], [192], [384]], [[1 / 1.8, 0.5 / 1.8, 2 / 1.8]], square=False)
    return tiny_release_detector(gen, K, mask_scores=mask_scores, mask_box_weight=10.0)


def test_release_detection_mask_scores():
    """RGNN.filter_detections: coefficients . prototypes (no sigmoid, no crop) + 10 x box_to_seg; padded slots
    very negative (the release's -inf)."""
    torch.manual_seed(0)
    boxes = torch.tensor([[8.0, 4.0, 40.0, 30.0], [100.0, 100.0, 110.0, 110.0]])
    logits = torch.full((2, K + 1), -10.0)
    logits[0, 3] = 5.0  # kept; the second is filtered out (its best log-probability 0.1 - log(40 + e^0.1) ~ -3.62)
    logits[1, :] = 0.0
    logits[1, 3] = 0.1
    coeffs = torch.randn(2, 4)
    protos = torch.randn(4, 12, 20)
    det = _detector("release")
    out = det.inference_single(Boxes(boxes), logits, torch.zeros(2, 4), coeffs, protos, (48, 80))
    assert out.valid.tolist() == [True, False]
    raw = torch.einsum("k,khw->hw", coeffs[0], protos)
    xs, ys = torch.linspace(0, 80, 20), torch.linspace(0, 48, 12)
    box = ((xs >= 8) & (xs <= 40))[None, :] & ((ys >= 4) & (ys <= 30))[:, None]
    torch.testing.assert_close(out.pred_masks[0], raw + 10.0 * box.float())
    assert (out.pred_masks[1] == MASK_SCORE_PAD).all()
    ours = _detector("sigmoid_crop").inference_single(Boxes(boxes), logits, torch.zeros(2, 4), coeffs, protos, (48, 80))
    assert ours.pred_masks.min() >= 0 and ours.pred_masks.max() <= 1


def _release_descriptor(maps, segscores, layers, convs):
    """DetectionDescriptorExtractor('mask pool') written from the release's formulas, per image."""
    pooled = []
    for f, (w, b) in convs.items():
        x = F.conv2d(maps[f][None], w[:, :, None, None], b)[0]  # AppNet 1x1 conv first
        s = torch.cat([torch.full((1, *segscores.shape[-2:]), 10.0), segscores])
        seg = F.softmax(F.interpolate(s[None], size=x.shape[-2:], mode="bilinear"), dim=1)[0, 1:]
        seg = seg / (seg.sum(dim=(1, 2), keepdim=True) + 1e-4)
        pooled.append(torch.einsum("dhw,nhw->nd", x, seg))
    v = torch.cat(pooled, dim=1)
    (w1, b1), (w2, b2), (w3, b3) = layers
    h = F.relu(F.linear(F.relu(F.linear(v, w1, b1)), w2, b2))
    return F.relu(v + F.linear(h, w3, b3))


def test_release_detection_descriptor():
    torch.manual_seed(1)
    net = AppearanceNetwork({"res4": 6, "res5": 10}, channels=4, hidden=3, descriptor="release")
    for p in net.parameters():
        torch.nn.init.normal_(p)
    maps = {"res4": torch.randn(1, 6, 5, 9), "res5": torch.randn(1, 10, 3, 5)}
    scores = torch.randn(3, 20, 36) * 4 + 8
    scores[2] = MASK_SCORE_PAD
    valid = torch.tensor([True, True, False])
    got = net(maps, [scores], [valid])[0]
    convs = {f: (net.convs[f].weight[:, :, 0, 0], net.convs[f].bias) for f in ("res4", "res5")}
    r = net.residual
    layers = [(r.fc1.weight, r.fc1.bias), (r.fc2.weight, r.fc2.bias), (r.fc3.weight, r.fc3.bias)]
    want = _release_descriptor({k: v[0] for k, v in maps.items()}, scores, layers, convs)
    torch.testing.assert_close(got[:2], want[:2], rtol=1e-4, atol=1e-4)
    assert (got[2] == 0).all()
    # the pooled maps compete: a detection's descriptor changes when another detection's scores change
    scores2 = scores.clone()
    scores2[1] += 5
    assert not torch.allclose(net(maps, [scores2], [valid])[0][0], got[0])
    assert tuple(net.residual.fc2.weight.shape) == (3, 3)  # 3 layers: dim-hidden-hidden-dim
    # the whole-image descriptor (the release's new_background): average of each 1x1-conv map
    want_bg = torch.cat(
        [F.conv2d(maps[f], w[:, :, None, None], b).mean(dim=(2, 3)) for f, (w, b) in convs.items()], dim=1
    )
    torch.testing.assert_close(net.image_descriptor(maps), want_bg, rtol=1e-5, atol=1e-5)


def test_release_appearance_update():
    """mean' = (1 - eta_m) mean + eta_m x; var' = (1 - eta_v) var + eta_v softplus(.) + eta_m eta_v /
    (eta_m + eta_v) (mean - x)^2; a new track: that update of N(0, softplus(init_var))."""
    upd = AppearanceUpdate(2, init_log_var=-7.0, appearance_dim=3)
    with torch.no_grad():
        upd.alpha.weight.copy_(torch.tensor([[1.0, 0.0]]))
        upd.alpha.bias.fill_(0.0)
        upd.beta.weight.copy_(torch.tensor([[0.0, 1.0]]))
        upd.beta.bias.fill_(-1.0)
        upd.var_new.weight.zero_()
        upd.init_var.copy_(torch.tensor([-7.0, 0.0, 1.0]))
    h = torch.tensor([[0.5, 2.0]])
    mean, var, x = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.1, 0.2, 0.3]]), torch.tensor([[0.0, 1.0, 5.0]])
    em, ev = 1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(-1.0))
    vn = math.log1p(math.exp(-7.0))
    new_mean, new_var = upd.update(mean, var, x, h)
    torch.testing.assert_close(new_mean, (1 - em) * mean + em * x)
    want_var = [
        (1 - ev) * v + ev * vn + em * ev / (em + ev) * (m - xx) ** 2
        for m, v, xx in zip(mean[0].tolist(), var[0].tolist(), x[0].tolist())
    ]
    torch.testing.assert_close(new_var[0], torch.tensor(want_var))
    init_mean, init_var = upd.initial(x, h)
    torch.testing.assert_close(init_mean, em * x)
    v0 = [math.log1p(math.exp(v)) for v in (-7.0, 0.0, 1.0)]
    want0 = [(1 - ev) * a + ev * vn + em * ev / (em + ev) * xx**2 for a, xx in zip(v0, x[0].tolist())]
    torch.testing.assert_close(init_var[0], torch.tensor(want0))
