"""An exponential moving average (EMA) of the model's weights, for the final model and every evaluation.

Not part of either paper: a training aid for short schedules (weight averaging as in Polyak & Juditsky, "Acceleration
of stochastic approximation by averaging", SIAM J. Control Optim. 1992; the decay ramp of YOLOv5 / timm's
``ModelEma``). Enabled by ``SOLVER.EMA.ENABLED``; after each optimizer step every floating-point tensor of the
model's ``state_dict`` (parameters and float buffers) is averaged::

    ema <- d * ema + (1 - d) * w,    d = min(SOLVER.EMA.DECAY, (1 + n) / (10 + n)),  n = iterations done

so the first iterations, far from any useful average, are forgotten quickly. Evaluations during training run on
the average (swapped in and back); after the last iteration the average is copied into the model, so
``model_final.pth`` and the evaluation after training hold it. The average is saved with every checkpoint
(``"model_ema"``), so ``--resume`` continues it; a checkpoint without one restarts it from the loaded weights.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Dict, List, Optional

import torch
from detectron2.engine import HookBase
from torch.nn.parallel import DataParallel, DistributedDataParallel

__all__ = ["ModelEMAHook", "ema_decay"]

CHECKPOINT_KEY = "model_ema"


def ema_decay(max_decay: float, updates: int) -> float:
    """The decay of update number ``updates`` (1-based): ``min(max_decay, (1 + n) / (10 + n))``."""
    return min(max_decay, (1.0 + updates) / (10.0 + updates))


class ModelEMAHook(HookBase):
    """Keeps the weight average of ``model`` (DDP-wrapped or not); see the module docstring.

    Must come before the checkpoint hook in the trainer's hooks, so that ``model_final.pth`` is written after the
    average was copied into the model."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"SOLVER.EMA.DECAY must be in (0, 1), got {decay}")
        if isinstance(model, (DistributedDataParallel, DataParallel)):
            model = model.module
        self.model = model
        self.decay = decay
        self._names: List[str] = [k for k, v in model.state_dict().items() if v.is_floating_point()]
        self._average: Optional[List[torch.Tensor]] = None
        self._final = False

    # ------------------------------------------------------------------------------------------- the average
    def _weights(self) -> List[torch.Tensor]:
        """The model's floating-point state tensors (sharing storage with the model), in ``self._names`` order."""
        state = self.model.state_dict()
        return [state[k] for k in self._names]

    def before_train(self):
        if self._average is None:
            self._average = [w.detach().clone() for w in self._weights()]

    def after_step(self):
        done = self.trainer.iter + 1
        weight = 1.0 - ema_decay(self.decay, done)
        with torch.no_grad():
            torch._foreach_lerp_(self._average, self._weights(), weight)
        if done >= self.trainer.max_iter:
            self.copy_average_into_model()

    def copy_average_into_model(self) -> None:
        """Replace the model's weights by the average (after the last iteration)."""
        with torch.no_grad():
            for w, a in zip(self._weights(), self._average):
                w.copy_(a)
        self._final = True
        logging.getLogger(__name__).info("EMA: the model's weights are now their moving average")

    def _swap(self) -> None:
        with torch.no_grad():
            for w, a in zip(self._weights(), self._average):
                kept = w.clone()
                w.copy_(a)
                a.copy_(kept)

    def evaluating_average(self, func: Callable[[], Any]) -> Callable[[], Any]:
        """``func`` run with the average swapped into the model (and swapped back after) during training; as is
        once the average is the model's (after the last iteration) or before any average exists."""

        @functools.wraps(func)
        def wrapped():
            if self._final or self._average is None:
                return func()
            self._swap()
            try:
                return func()
            finally:
                self._swap()

        return wrapped

    # ------------------------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> Dict[str, Any]:
        if self._average is None:
            return {}
        return {"decay": self.decay, "average": dict(zip(self._names, self._average))}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        average = state.get("average")
        if not average:
            return
        missing = [k for k in self._names if k not in average]
        if missing:
            raise KeyError(f"the checkpoint's '{CHECKPOINT_KEY}' lacks {len(missing)} model tensors, e.g. {missing[0]}")
        weights = self._weights()
        self._average = [average[k].to(device=w.device, dtype=w.dtype).clone() for k, w in zip(self._names, weights)]
