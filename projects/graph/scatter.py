"""Scatter reductions over edge lists: torch-scatter when importable, native torch otherwise.

Both paths compute the same result and are tested against each other (``tests/test_scatter.py``).
Shapes: ``src`` is (E, ...) with one row per edge, ``index`` is (E,) int64 with values in [0, dim_size).
The result is (dim_size, ...). Rows of the output that receive no edge are 0 for every reduction.
"""

from __future__ import annotations

import torch

try:  # pragma: no cover - depends on the environment
    import torch_scatter as _ts

    HAS_TORCH_SCATTER = True
except Exception:  # ImportError or an ABI mismatch with the installed torch
    _ts = None
    HAS_TORCH_SCATTER = False

__all__ = ["HAS_TORCH_SCATTER", "scatter_sum", "scatter_mean", "scatter_max", "scatter_softmax"]


def _use_lib(backend: str) -> bool:
    if backend == "torch_scatter":
        if not HAS_TORCH_SCATTER:
            raise RuntimeError("backend='torch_scatter' requested but torch_scatter cannot be imported")
        return True
    if backend == "native":
        return False
    if backend == "auto":
        return HAS_TORCH_SCATTER
    raise ValueError(f"unknown scatter backend {backend!r}; use 'auto', 'torch_scatter' or 'native'")


def _expand_index(index: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    return index.view(-1, *([1] * (src.dim() - 1))).expand_as(src)


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int, backend: str = "auto") -> torch.Tensor:
    """out[i] = sum of src[e] over edges e with index[e] == i. (E, ...) -> (dim_size, ...)."""
    if _use_lib(backend):
        return _ts.scatter_add(src, index, dim=0, dim_size=dim_size)
    out = src.new_zeros((dim_size,) + tuple(src.shape[1:]))
    return out.index_add_(0, index, src)


def scatter_mean(src: torch.Tensor, index: torch.Tensor, dim_size: int, backend: str = "auto") -> torch.Tensor:
    """out[i] = mean of src[e] over edges e with index[e] == i (0 where there is none)."""
    if _use_lib(backend):
        return _ts.scatter_mean(src, index, dim=0, dim_size=dim_size)
    total = scatter_sum(src, index, dim_size, backend="native")
    count = torch.bincount(index, minlength=dim_size).clamp_(min=1).to(src.dtype)
    return total / count.view(-1, *([1] * (src.dim() - 1)))


def scatter_max(src: torch.Tensor, index: torch.Tensor, dim_size: int, backend: str = "auto") -> torch.Tensor:
    """out[i] = element-wise max of src[e] over edges with index[e] == i (0 where there is none)."""
    if _use_lib(backend):
        return _ts.scatter_max(src, index, dim=0, dim_size=dim_size)[0]
    out = src.new_zeros((dim_size,) + tuple(src.shape[1:]))
    return out.scatter_reduce_(0, _expand_index(index, src), src, reduce="amax", include_self=False)


def scatter_softmax(src: torch.Tensor, index: torch.Tensor, dim_size: int, backend: str = "auto") -> torch.Tensor:
    """Softmax of src over the edges sharing the same index (per output row). Returns (E, ...)."""
    if _use_lib(backend):
        return _ts.composite.scatter_softmax(src, index, dim=0, dim_size=dim_size)
    # Max-subtraction for stability; rows without edges are never gathered.
    row_max = src.new_full((dim_size,) + tuple(src.shape[1:]), float("-inf"))
    row_max = row_max.scatter_reduce(0, _expand_index(index, src), src.detach(), reduce="amax", include_self=True)
    exp = (src - row_max[index]).exp()
    denom = scatter_sum(exp, index, dim_size, backend="native")
    return exp / denom[index]
