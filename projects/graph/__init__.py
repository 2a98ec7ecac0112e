from .scatter import HAS_TORCH_SCATTER, scatter_max, scatter_mean, scatter_softmax, scatter_sum

__all__ = ["HAS_TORCH_SCATTER", "scatter_sum", "scatter_mean", "scatter_max", "scatter_softmax"]
