"""Recurrent connection around the GNN (§3.3, eq. 2-3).

The vanilla LSTM (eq. 2) computes from input x_t and previous output h_{t-1}

    i = sigmoid(W_i x + U_i h),  f = sigmoid(W_f x + U_f h),  o = sigmoid(W_o x + U_o h),  g = tanh(W_g x + U_g h)
    c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)

The paper replaces the LSTM's input layer by the whole GNN (eq. 3): the GNN reads the previous track embeddings
h_{t-1} and outputs x_t = GNN(h_{t-1}, detections)_i per track (3a); eq. (2b-g) then map (x_t, h_{t-1}, c_{t-1})
to (h_t, c_t) (3b). h_t is the final track embedding: input to the GNN in the next frame and to the scoring
head. Following the authors' public release, W and U are each Linear(D, 4D). A new track starts from h = c = 0 with x
= the detection's final GNN vertex (§3.1, the release). The empty track has its own gate of the same kind
(``RGNNTracker.empty_gate``, the release's ``memory_layers['background']``).

``GATING`` ablations (Table 1): "simple" has a single gate and a tanh, h_t = z * h_{t-1} + (1 - z) * tanh(W x),
z = sigmoid(W_z x + U_z h_{t-1}); "none" feeds the GNN output straight back (h_t = x_t), which diverges in the
paper and is provided only for the ablation.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

__all__ = ["LSTMGate", "SimpleGate", "NoGate", "build_gate"]


class LSTMGate(nn.Module):
    """Eq. (3b): LSTM gates with the GNN output as input. All tensors (..., D). Rows of ``input`` / ``hidden`` are
    the gates (i, f, o, g); the release's ``TrackDescriptor.update_memory`` orders them (f, i, o, g) with a bias on
    both layers -- ``vis_rgnn.convert_release`` permutes the rows and sums the biases, which is exact."""

    def __init__(self, dim: int):
        super().__init__()
        self.input = nn.Linear(dim, 4 * dim)
        self.hidden = nn.Linear(dim, 4 * dim, bias=False)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        i, f, o, g = (self.input(x) + self.hidden(h)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class SimpleGate(nn.Module):
    """Single update gate + tanh (Table 1 "Simple gate"). The cell state is unused and returned unchanged."""

    def __init__(self, dim: int):
        super().__init__()
        self.gate_x, self.gate_h = nn.Linear(dim, dim), nn.Linear(dim, dim, bias=False)
        self.candidate = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        z = torch.sigmoid(self.gate_x(x) + self.gate_h(h))
        return z * h + (1 - z) * torch.tanh(self.candidate(x)), c


class NoGate(nn.Module):
    """No gating (Table 1 "No LSTM-like gating"): h_t = x_t."""

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return x, c


def build_gate(kind: str, dim: int) -> nn.Module:
    """``kind``: ``MODEL.RGNN.GATING`` = "lstm" | "simple" | "none"."""
    if kind == "lstm":
        return LSTMGate(dim)
    if kind == "simple":
        return SimpleGate(dim)
    if kind == "none":
        return NoGate()
    raise ValueError(f"unknown gating {kind!r}; use 'lstm', 'simple' or 'none'")
