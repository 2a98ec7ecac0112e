"""The fixed-size, sync-free NMS / matching / gathers of the VisSTG online step equal their sequential
definitions (torchvision's batched_nms, a Python greedy matcher, gather_at_cells) on random inputs."""

import pytest
import torch
from torchvision.ops import batched_nms

from vis_stg.sync_free import (
    EXACT,
    gather_at_cells_static,
    greedy_match_fixed_point,
    greedy_nms_fixed_point,
    stable_compact,
)
from vis_stg.targets import gather_at_cells

torch.set_num_threads(1)


def _greedy_reference(scores, valid):
    det_to_ref = [-1] * scores.shape[1]
    used = set()
    pairs = sorted(((float(scores[r, d]), r, d) for r, d in valid.nonzero().tolist()), key=lambda p: -p[0])
    for _, r, d in pairs:
        if r not in used and det_to_ref[d] < 0:
            used.add(r)
            det_to_ref[d] = r
    return det_to_ref


@pytest.mark.parametrize("seed", range(6))
def test_nms_equals_torchvision_batched_nms(seed):
    g = torch.Generator().manual_seed(seed)
    k = 60
    xy = torch.rand(k, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + 5 + torch.rand(k, 2, generator=g) * 20], 1)  # heavily overlapping
    scores = torch.rand(k, generator=g).sort(descending=True).values
    classes = torch.randint(0, 3, (k,), generator=g)
    valid = scores > 0.2
    keep, converged = greedy_nms_fixed_point(boxes, classes, valid, 0.5, EXACT)
    assert bool(converged)
    ref = batched_nms(boxes[valid], scores[valid], classes[valid], 0.5)
    assert keep.nonzero().flatten().tolist() == sorted(valid.nonzero().flatten()[ref].tolist())
    # Few iterations: either exact or flagged as not converged.
    few, ok = greedy_nms_fixed_point(boxes, classes, valid, 0.5, 2)
    if bool(ok):
        assert few.tolist() == keep.tolist()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("structured", [False, True])
def test_matching_equals_sequential_greedy(seed, structured):
    g = torch.Generator().manual_seed(seed)
    n, d = 9, 12
    if structured:  # s = a_i + b_j: one locally dominant pair per round, the slowest case
        scores = torch.rand(n, 1, generator=g) + torch.rand(1, d, generator=g)
    else:
        scores = torch.rand(n, d, generator=g)
    valid = torch.rand(n, d, generator=g) > 0.3
    det_to_ref, converged = greedy_match_fixed_point(scores, valid, EXACT)
    assert bool(converged) and det_to_ref.tolist() == _greedy_reference(scores, valid)
    partial, ok = greedy_match_fixed_point(scores, valid, 2)
    if bool(ok):
        assert partial.tolist() == det_to_ref.tolist()
    if structured:
        assert not bool(ok)  # 2 rounds cannot finish here, and it says so


def test_empty_matching_and_compaction():
    det_to_ref, converged = greedy_match_fixed_point(torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.bool), 3)
    assert det_to_ref.tolist() == [-1] * 4 and bool(converged)
    order, count = stable_compact(torch.tensor([False, True, False, True, True]))
    assert order.tolist()[:3] == [1, 3, 4] and int(count) == 3


def test_static_gather_equals_gather_at_cells():
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(1, 5, h, w, generator=g) for h, w in [(8, 12), (4, 6), (2, 3)]]
    level = torch.tensor([0, 2, 1, 0, 2])
    cells = torch.tensor([[11, 7], [2, 1], [0, 3], [3, 3], [0, 0]])
    torch.testing.assert_close(
        gather_at_cells_static(maps, level, cells), gather_at_cells(maps, level, torch.zeros_like(level), cells)
    )


@pytest.mark.parametrize("depthwise", [True, False])
@pytest.mark.parametrize("impl", ["deform_conv2d", "grid_sample"])
def test_kernel_warp_at_cells_equals_the_full_warp(depthwise, impl):
    from vis_stg.kernel_warp import KernelWarp

    torch.manual_seed(0)
    warp = KernelWarp(16, 12, 2, 8, 3, depthwise, impl)
    with torch.no_grad():
        for p in warp.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # non-zero offsets (they start at 0)
    shapes = [(8, 12), (4, 6), (1, 1)]  # a 1x1 level too
    th, fk, ft = ([torch.randn(1, c, *s) for s in shapes] for c in (12, 16, 16))
    level = torch.tensor([0, 0, 0, 1, 1, 2, 0])
    cells = torch.tensor([[0, 0], [11, 7], [5, 3], [5, 3], [0, 2], [0, 0], [3, 7]])
    full = gather_at_cells(warp.warp_levels(th, fk, ft), level, torch.zeros_like(level), cells)
    torch.testing.assert_close(warp.warp_at_cells(th, fk, ft, level, cells), full, atol=1e-4, rtol=1e-4)
