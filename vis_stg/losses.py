"""Loss functions of VisSTG: CenterNet centre focal loss (§3.3), dice loss (§3.4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["heatmap_focal_loss", "dice_loss", "graph_anchor"]


def heatmap_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss, summed (divide by the number of objects).

    ``logits`` and ``target`` have the same shape; ``target`` is the gaussian heat map (1 at centres).
    Computed with log-sigmoid for numerical stability instead of clamping probabilities.
    """
    pos = target.eq(1).float()
    prob = logits.sigmoid()
    log_p, log_1mp = F.logsigmoid(logits), F.logsigmoid(-logits)
    pos_loss = (1 - prob) ** alpha * log_p * pos
    neg_loss = (1 - target) ** beta * prob**alpha * log_1mp * (1 - pos)
    return -(pos_loss.sum() + neg_loss.sum())


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-instance dice loss 1 - 2|X∩Y| / (|X|^2 + |Y|^2) (V-Net form, as CondInst). (N, H, W) -> (N,)."""
    prob = logits.sigmoid().flatten(1)
    target = target.flatten(1).to(prob.dtype)
    inter = (prob * target).sum(dim=1)
    union = (prob**2).sum(dim=1) + (target**2).sum(dim=1)
    return 1 - 2 * inter / (union + eps)


def graph_anchor(*tensors: torch.Tensor) -> torch.Tensor:
    """0 · Σ tensors: a zero scalar that keeps the parameters producing ``tensors`` in the autograd graph.

    Added to a loss whose terms are empty in this iteration (no GT object, no reference instance), so every
    trainable parameter still receives a (zero) gradient, as DistributedDataParallel with
    ``find_unused_parameters=False`` requires."""
    return sum(t.sum() for t in tensors) * 0.0
