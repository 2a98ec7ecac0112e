"""§3.6 occlusion memory: a stored kernel is decoded with the coordinate normaliser of the FPN level it was produced
at, not the level its object is detected on after the occlusion (else its mask is scaled by the levels' ratio)."""

import torch
from detectron2.modeling import build_model

import vis_stg.online_step
from tests.vis_stg_fixtures import H, W, tiny_cfg
from vis_stg.online_step import FrameHeads, TrackSettings, track_frame
from vis_stg.state import ReferenceSet
from vis_stg.sync_free import gather_at_cells_static

torch.set_num_threads(1)


def _diamond_kernel() -> torch.Tensor:
    """169 dynamic parameters whose mask is the diamond |x| + |y| < 0.5 in normalised relative coordinates:
    a radius of half the normaliser in input pixels, whatever the mask features."""
    w1, w2, w3 = torch.zeros(8, 10), torch.zeros(8, 8), torch.zeros(1, 8)
    w1[0, 0], w1[1, 0], w1[2, 1], w1[3, 1] = 1.0, -1.0, 1.0, -1.0  # ReLU(±x), ReLU(±y)
    w2[0, :4] = 1.0  # |x| + |y|
    w3[0, 0] = -20.0
    b1, b2, b3 = torch.zeros(8), torch.zeros(8), torch.tensor([10.0])
    return torch.cat([w1.flatten(), w2.flatten(), w3.flatten(), b1, b2, b3])


def test_a_memory_kernel_is_decoded_at_its_own_level(monkeypatch):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(**{"TRACK.ASSOCIATION": "embedding", "GRAPH.FUSION": False})).eval()
    assert model.mask_head.num_params == 169 and model.coord_norm[:2] == [32, 64]
    shapes = [(H // 8, W // 8), (H // 16, W // 16), (H // 32, W // 32)]
    features = [torch.randn(1, 16, h, w) for h, w in shapes]
    heat = [torch.full((1, 3, h, w), -10.0) for h, w in shapes]
    heat[1][0, 0, 2, 3] = 5.0  # the one detection: class 0, level 1 (stride 16), cell (3, 2) -> (56, 40) px
    with torch.no_grad():
        heads = FrameHeads(
            det=(
                heat,
                [torch.full((1, 2, h, w), 2.0) for h, w in shapes],
                [torch.zeros(1, 2, h, w) for h, w in shapes],
            ),
            thetas=model.controller(features),
            mask_feats=model.mask_branch(features[0]),
            cue_maps=[torch.randn(1, 8, h, w) for h, w in shapes],
        )
    # The memory holds one instance, last seen at frame 2, whose kernel was produced on level 0 (normaliser 32).
    kernel = _diamond_kernel()
    refs = ReferenceSet(
        track_ids=torch.tensor([7]),
        classes=torch.tensor([0]),
        scores=torch.tensor([0.9]),
        boxes=torch.tensor([[40.0, 24.0, 72.0, 56.0]]),
        nodes=[],
        kernels=kernel[None],
        kernel_levels=torch.tensor([0]),
        last_seen=torch.tensor([2]),
        embeddings=torch.randn(1, 8),
    )

    def warp(level, cells):  # θ_{t-1} warped to frame t (here frame t-1 = frame t)
        return model.kernel_warp.warp_at_cells(heads.thetas, features, features, level, cells)

    def match_first_detection_to_the_memory(scores, valid, ref_classes, det_classes, prune, iters):
        det_to_ref = torch.full((scores.shape[1],), -1, dtype=torch.long)
        det_to_ref[0] = 0
        return det_to_ref, torch.tensor(True)

    monkeypatch.setattr(vis_stg.online_step, "match", match_first_detection_to_the_memory)
    with torch.no_grad():
        out = track_frame(
            heads, features, refs, None, model.association("embedding"), model.predict_masks, warp, 8, 5,
            model.strides, model.level_strides, model.decode, TrackSettings(), 6,
        )  # fmt: skip
    dets = out.dets
    assert dets.valid.tolist()[:2] == [True, False] and dets.level[0] == 1 and out.track_ids[0] == 7

    # Fused test mask = mean of θ_t's mask and the memory kernel's mask: recover the memory kernel's part.
    with torch.no_grad():
        theta_t = gather_at_cells_static(heads.thetas, dets.level[:1], dets.cells[:1])
        p_t = model.predict_masks(heads.mask_feats, theta_t, dets.level[:1], dets.cells[:1], torch.zeros(1).long())
        memory_part = 2 * out.mask_probs[0] - p_t.sigmoid()[0]
        location = torch.tensor([[56.0, 40.0]])

        def decoded(norm):
            return model.mask_head(
                heads.mask_feats, kernel[None], location, torch.zeros(1).long(), torch.tensor([norm])
            )

        own_level, detection_level = decoded(32.0).sigmoid()[0], decoded(64.0).sigmoid()[0]
    torch.testing.assert_close(memory_part, own_level, atol=1e-5, rtol=0)
    # The diamond keeps its size (radius 16 px): decoded with the detection level's normaliser it would be
    # twice as large (radius 32 px, four times the area).
    area_own, area_det = (own_level > 0.5).sum().item(), (detection_level > 0.5).sum().item()
    assert area_own > 0 and 3.0 < area_det / area_own < 5.0
