import pytest
import torch

from projects.graph import scatter as S

BACKENDS = ["native"] + (["torch_scatter"] if S.HAS_TORCH_SCATTER else [])


def _dense(src, index, n, reduce):
    out = []
    for i in range(n):
        rows = src[index == i]
        if len(rows) == 0:
            out.append(torch.zeros(src.shape[1:]))
        elif reduce == "sum":
            out.append(rows.sum(0))
        elif reduce == "mean":
            out.append(rows.mean(0))
        else:
            out.append(rows.max(0).values)
    return torch.stack(out)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_scatter_matches_dense_reference(backend, reduce):
    g = torch.Generator().manual_seed(0)
    src = torch.randn(50, 4, generator=g)
    index = torch.randint(0, 7, (50,), generator=g)
    index[index == 5] = 6  # row 5 receives no edge -> 0
    fn = {"sum": S.scatter_sum, "mean": S.scatter_mean, "max": S.scatter_max}[reduce]
    out = fn(src, index, 8, backend=backend)
    assert out.shape == (8, 4)
    torch.testing.assert_close(out, _dense(src, index, 8, reduce))


@pytest.mark.parametrize("backend", BACKENDS)
def test_scatter_softmax_normalises_per_row_and_backprops(backend):
    src = torch.randn(30, 2, requires_grad=True)
    index = torch.randint(0, 4, (30,))
    out = S.scatter_softmax(src, index, 4, backend=backend)
    sums = S.scatter_sum(out, index, 4, backend="native")
    present = torch.bincount(index, minlength=4) > 0
    torch.testing.assert_close(sums[present], torch.ones_like(sums[present]))
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(src.grad).all()


def test_sum_gradient_equal_between_backends():
    if not S.HAS_TORCH_SCATTER:
        pytest.skip("torch-scatter not installed: only the native path exists")
    src = torch.randn(20, 3, requires_grad=True)
    index = torch.randint(0, 5, (20,))
    w = torch.randn(5, 3)
    (S.scatter_sum(src, index, 5, backend="native") * w).sum().backward()
    g1 = src.grad.clone()
    src.grad = None
    (S.scatter_sum(src, index, 5, backend="torch_scatter") * w).sum().backward()
    torch.testing.assert_close(g1, src.grad)


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="unknown scatter backend"):
        S.scatter_sum(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), 1, backend="cuda-magic")
