"""Unit tests of RGNN-VIS building blocks: GNN (equivariance, padding, padded == edge-list reference), gates,
appearance model, Lovász hinge, Fast NMS and the detection <-> annotation assignment."""

import pytest
import torch

from tests.rgnn_references import fast_nms, scatter_gnn
from vis_rgnn.appearance import AppearanceNetwork, gaussian_log_likelihood
from vis_rgnn.detector import crop_masks
from vis_rgnn.graph import TrackDetectionGNN
from vis_rgnn.heads import exclusive_masks
from vis_rgnn.losses import lovasz_hinge
from vis_rgnn.recurrent import build_gate
from vis_rgnn.targets import assign_detections

torch.set_num_threads(1)
NUM_CLASSES, DIM = 3, 16
K = NUM_CLASSES + 1


def _gnn(num_blocks=2):
    torch.manual_seed(0)
    return TrackDetectionGNN(NUM_CLASSES, DIM, 8, 8, num_blocks, True).eval()


def _inputs(b=2, n=5, m=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {
        "tracks": torch.randn(b, n, DIM, generator=g),
        "dets": torch.randn(b, m, K + 4, generator=g),
        "edges": torch.randn(b, n, m, K + 6, generator=g),
        "empty_edges": torch.randn(b, m, K + 5, generator=g),
        "track_mask": torch.ones(b, n, dtype=torch.bool),
        "det_mask": torch.ones(b, m, dtype=torch.bool),
        "empty": torch.randn(b, DIM, generator=g),
    }


def test_gnn_shapes_and_gradients():
    gnn = _gnn().train()
    x = _inputs()
    x["tracks"].requires_grad_(True)
    out = gnn(**x)
    assert out["edges"].shape == (2, 5, 4, DIM)
    assert out["empty_edges"].shape == (2, 4, DIM)
    assert out["tracks"].shape == (2, 5, DIM)
    assert out["dets"].shape == (2, 4, DIM) and out["empty"].shape == (2, DIM)
    sum(v.sum() for v in out.values()).backward()
    assert x["tracks"].grad.abs().sum() > 0
    assert all(p.grad is not None for p in gnn.parameters()), "every GNN parameter must influence an output"


def test_gnn_permutation_equivariance():
    gnn, x = _gnn(), _inputs()
    ref = gnn(**x)
    pt, pd = torch.tensor([3, 0, 4, 1, 2]), torch.tensor([2, 3, 1, 0])
    xt = dict(x, tracks=x["tracks"][:, pt], edges=x["edges"][:, pt])
    out = gnn(**xt)  # permuted tracks
    torch.testing.assert_close(out["tracks"], ref["tracks"][:, pt], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["edges"], ref["edges"][:, pt], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["empty_edges"], ref["empty_edges"], rtol=1e-5, atol=1e-5)
    xd = dict(x, dets=x["dets"][:, pd], edges=x["edges"][:, :, pd], empty_edges=x["empty_edges"][:, pd])
    out = gnn(**xd)  # permuted detections
    torch.testing.assert_close(out["tracks"], ref["tracks"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["edges"], ref["edges"][:, :, pd], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["empty_edges"], ref["empty_edges"][:, pd], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["dets"], ref["dets"][:, pd], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["empty"], ref["empty"], rtol=1e-5, atol=1e-5)


def test_padding_changes_no_active_output():
    gnn, x = _gnn(), _inputs(b=1, n=3, m=2)
    ref = gnn(**x)
    # Pad with 2 inactive tracks and 3 inactive detections holding huge / non-finite values.
    big = _inputs(b=1, n=5, m=5, seed=7)
    for key in ("tracks", "dets", "edges", "empty_edges"):
        big[key] = big[key] * 1e4
    big["tracks"][0, 4] = float("nan")
    ti, di = torch.tensor([0, 2, 3]), torch.tensor([1, 4])
    big["tracks"][:, ti] = x["tracks"]
    big["dets"][:, di] = x["dets"]
    big["empty"] = x["empty"]
    big["edges"][0, ti[:, None], di] = x["edges"][0]
    big["empty_edges"][:, di] = x["empty_edges"]
    big["track_mask"] = torch.tensor([[True, False, True, True, False]])
    big["det_mask"] = torch.tensor([[False, True, False, False, True]])
    out = gnn(**big)
    torch.testing.assert_close(out["tracks"][:, ti], ref["tracks"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["edges"][0][ti[:, None], di], ref["edges"][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["empty_edges"][:, di], ref["empty_edges"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["dets"][:, di], ref["dets"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["empty"], ref["empty"], rtol=1e-5, atol=1e-5)


def test_padded_gnn_equals_the_edge_list_reference():
    """The masked sums over padded tensors give the GNN of the active elements alone (tests/rgnn_references.py)."""
    x = _inputs(b=3, n=6, m=5)
    x["track_mask"][0, 4:] = False
    x["det_mask"][1, :2] = False
    x["track_mask"][2] = False  # a video without tracks
    gnn = _gnn()
    with torch.no_grad():
        a, b = gnn(**x), scatter_gnn(gnn, **x)
    assert set(a) == set(b)
    em = x["track_mask"][:, :, None] & x["det_mask"][:, None, :]
    torch.testing.assert_close(a["edges"][em], b["edges"][em], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a["tracks"][x["track_mask"]], b["tracks"][x["track_mask"]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a["empty_edges"][x["det_mask"]], b["empty_edges"][x["det_mask"]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a["dets"][x["det_mask"]], b["dets"][x["det_mask"]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a["empty"], b["empty"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "simple", "none"])
def test_gates(kind):
    gate = build_gate(kind, DIM)
    x, h, c = torch.randn(7, DIM, requires_grad=True), torch.randn(7, DIM), torch.randn(7, DIM)
    h2, c2 = gate(x, h, c)
    assert h2.shape == c2.shape == (7, DIM)
    h2.sum().backward()
    assert x.grad is not None
    if kind == "lstm":
        assert h2.abs().max() <= 1.0  # o * tanh(c)


def test_gaussian_log_likelihood_matches_torch_distributions():
    x, mean, var = torch.randn(3, 5), torch.randn(3, 5), torch.rand(3, 5) + 0.1
    ref = torch.distributions.Normal(mean, var.sqrt()).log_prob(x).mean(-1)
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, var), ref)


def test_appearance_network_shapes():
    net = AppearanceNetwork({"res4": 12, "res5": 20}, channels=8, hidden=4)
    feats = {"res4": torch.randn(2, 12, 8, 12), "res5": torch.randn(2, 20, 4, 6)}
    masks = [torch.rand(3, 32, 48), torch.rand(0, 32, 48)]
    out = net(feats, masks)
    assert out[0].shape == (3, 16) and out[1].shape == (0, 16)
    torch.testing.assert_close(out[0].norm(dim=-1), torch.ones(3))


def test_lovasz_hinge():
    labels = torch.zeros(2, 4, 4)
    labels[:, 1:3, 1:3] = 1
    perfect = (2 * labels - 1) * 5.0
    assert torch.allclose(lovasz_hinge(perfect, labels), torch.zeros(2))
    wrong = -perfect
    assert (lovasz_hinge(wrong, labels) > 1.0).all()
    logits = torch.randn(2, 4, 4, requires_grad=True)
    lovasz_hinge(logits, labels).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_fast_nms_and_crop():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    keep = fast_nms(boxes, scores, 0.5)
    assert keep.tolist() == [3, 2]
    masks = crop_masks(torch.ones(1, 8, 8), torch.tensor([[2.0, 2.0, 4.0, 6.0]]))
    assert masks.sum() == 2 * 4


@pytest.mark.parametrize("size", [(7, 9), (1, 5), (4, 1)])
@pytest.mark.parametrize("inputs", ["ours_residual", "ours", "release"])
@pytest.mark.parametrize("grad", [True, False])
def test_mask_reweighting_equals_the_plain_convolution(size, inputs, grad):
    """The border-corrected 2-channel convolution (in place at inference) is Table 3's plain 18-channel one."""
    from tests.rgnn_references import plain_mask_reweighting
    from vis_rgnn.heads import MaskReweighting

    torch.manual_seed(0)
    kind = "release" if inputs == "release" else "ours"
    module = MaskReweighting(8, 4, 5, residual=inputs == "ours_residual", inputs=kind).double()
    for p in module.parameters():
        torch.nn.init.normal_(p)
    h, masks = torch.randn(3, 8, dtype=torch.double), torch.rand(3, *size, dtype=torch.double)
    box = (torch.rand(3, *size) > 0.5).double()
    with torch.set_grad_enabled(grad):
        got = module(h, masks, box)
    with torch.no_grad():
        want = plain_mask_reweighting(module, h, masks, box)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_exclusive_masks():
    logits = torch.tensor([[[2.0, -1.0], [0.5, 3.0]], [[1.0, 2.0], [1.5, -2.0]]])
    m = exclusive_masks(logits)
    assert m.sum(0).max() <= 1
    assert m.tolist() == [[[True, False], [False, True]], [[False, True], [True, False]]]


def test_assign_detections_best_match_wins():
    gt = torch.tensor([[0, 0, 10, 10], [50, 50, 60, 60.0]])
    dets = torch.tensor([[0, 0, 10, 11], [0, 0, 10, 10], [100, 100, 110, 110], [50, 50, 59, 59.0]])
    assert assign_detections(dets, gt, 0.5).tolist() == [-1, 0, -1, 1]


def test_heuristic_association_is_the_masktrack_rule():
    """MaskTrack R-CNN: the "new" dummy counts as the same class with IoU 0; competing detections of one track:
    the best comprehensive score keeps it, the others are dropped; low-confidence detections are ignored."""
    from vis_rgnn.association import heuristic_association

    app = torch.eye(4)[None]  # 4 orthogonal unit descriptors
    track_app = torch.stack([app[0, 0], app[0, 1]])[None]  # tracks look like detections 0 and 1
    det_app = torch.stack([app[0, 0], app[0, 0], -app[0, 1], app[0, 3]])[None]
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.05]])
    det_classes = torch.tensor([[0, 0, 1, 1]])
    track_classes = torch.tensor([[0, 1]])
    alive = torch.ones(1, 2, dtype=torch.bool)
    iou = torch.tensor([[[0.8, 0.6, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    valid = torch.ones(1, 4, dtype=torch.bool)
    kw = dict(temperature=10.0, score_weight=1.0, iou_weight=2.0, class_weight=10.0, score_thresh=0.1)
    assigned, new = heuristic_association(
        scores, det_classes, det_app, valid, track_app, track_classes, alive, iou, **kw
    )
    # dets 0 and 1 both pick track 0; det 0 (higher IoU) keeps it and det 1 is dropped. Det 2 (same class as
    # track 1 but opposite appearance, no overlap) starts a track: the dummy's class bonus equals the track's,
    # so appearance decides. Det 3 is below the score threshold.
    assert assigned.tolist() == [[0, -1]]
    assert new.tolist() == [[False, False, True, False]]


def test_scoring_evidence_starts_as_the_mean_detection_log_probability():
    """SCORING_EVIDENCE: an untrained head scores a track by its detections' mean class log-probability."""
    from vis_rgnn.heads import TrackScoringHead

    torch.manual_seed(0)
    head = TrackScoringHead(8, 3, evidence=True)
    h = torch.randn(2, 5, 8)
    mean_log_probs = torch.randn(2, 5, 4).log_softmax(-1)
    assert torch.equal(head(h, mean_log_probs), mean_log_probs)
    loss = head(h, mean_log_probs).logsumexp(-1).sum()
    loss.backward()
    assert head.cls.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="mean class log-probabilities"):
        head(h)
    plain = TrackScoringHead(8, 3)
    assert not torch.equal(plain(h), torch.zeros(2, 5, 4))


def test_residual_mask_reweighting_starts_as_the_detection_mask_and_learns():
    """MASK_RESIDUAL: an untrained module returns the detection mask's logit (same binary mask after the
    exclusive assignment), and its last layer receives gradient; without it the output ignores that logit."""
    from vis_rgnn.heads import MaskReweighting

    torch.manual_seed(0)
    module = MaskReweighting(8, 4, 4, residual=True)
    h = torch.randn(3, 8)
    masks = torch.rand(3, 10, 12)
    boxes = torch.ones(3, 10, 12)
    out = module(h, masks, boxes)
    assert torch.allclose(out, torch.logit(masks.clamp(1e-4, 1 - 1e-4)))
    assert torch.equal(exclusive_masks(out), exclusive_masks(torch.logit(masks)))
    (out * torch.randn_like(out)).sum().backward()
    assert module.conv2.weight.grad.abs().sum() > 0
    plain = MaskReweighting(8, 4, 4, residual=False)
    assert not torch.allclose(plain(h, masks, boxes), torch.logit(masks.clamp(1e-4, 1 - 1e-4)), atol=1e-2)
