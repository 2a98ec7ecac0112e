"""Mixed precision for training (``SOLVER.AMP``) and online inference (``TEST.AMP``).

- CUDA: training uses detectron2's ``AMPTrainer`` (autocast + GradScaler) in ``SOLVER.AMP.DTYPE`` (float16 by
  default, as detectron2). CPU: training runs the forward pass under ``torch.autocast("cpu", bfloat16)`` (no
  loss scaling: bfloat16 has float32's exponent range); float16 on the CPU is refused.
- Inference: ``TEST.AMP.ENABLED`` runs every model forward of evaluation under autocast in ``TEST.AMP.DTYPE``.
  ``"auto"`` = float16 on CUDA, bfloat16 on the CPU.
"""

from __future__ import annotations

import torch
from detectron2.config import CfgNode as CN
from torch import nn

__all__ = ["add_amp_config", "resolve_amp_dtype", "AutocastModel", "autocast_for_inference"]

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def add_amp_config(cfg: CN) -> None:
    """``SOLVER.AMP.DTYPE`` and ``TEST.AMP.{ENABLED, DTYPE}`` (detectron2 has ``SOLVER.AMP.ENABLED`` only)."""
    cfg.SOLVER.AMP.DTYPE = "auto"  # "auto" | "float16" | "bfloat16"
    cfg.TEST.AMP = CN()
    cfg.TEST.AMP.ENABLED = False  # run evaluation / online inference under autocast
    cfg.TEST.AMP.DTYPE = "auto"


def resolve_amp_dtype(name: str, device_type: str, key: str = "SOLVER.AMP.DTYPE") -> torch.dtype:
    """``name`` ("auto" | "float16" | "bfloat16") -> torch dtype for autocast on ``device_type``."""
    if name == "auto":
        return torch.float16 if device_type == "cuda" else torch.bfloat16
    if name not in _DTYPES:
        raise ValueError(f"{key} must be 'auto', 'float16' or 'bfloat16', got {name!r}")
    if device_type == "cpu" and name == "float16":
        raise ValueError(
            f"{key} float16 is not supported on the CPU (autocast there is bfloat16); use bfloat16 or auto"
        )
    return _DTYPES[name]


class AutocastModel(nn.Module):
    """Runs ``model``'s forward under ``torch.autocast(device_type, dtype)``; with ``training_only`` only in
    train mode. Backward runs outside autocast, as PyTorch recommends; parameters stay float32."""

    def __init__(self, model: nn.Module, device_type: str, dtype: torch.dtype, training_only: bool = False):
        super().__init__()
        self.model, self.device_type, self.dtype, self.training_only = model, device_type, dtype, training_only

    def forward(self, *args, **kwargs):
        enabled = self.training or not self.training_only
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=enabled):
            return self.model(*args, **kwargs)


def autocast_for_inference(cfg: CN, model: nn.Module) -> nn.Module:
    """``model`` wrapped for ``TEST.AMP`` (unchanged when disabled or absent from ``cfg``)."""
    amp = cfg.TEST.get("AMP")
    if amp is None or not amp.ENABLED:
        return model
    device_type = torch.device(cfg.MODEL.DEVICE).type
    return AutocastModel(model, device_type, resolve_amp_dtype(amp.DTYPE, device_type, "TEST.AMP.DTYPE"))
