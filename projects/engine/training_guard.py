"""Training-time fault checks: non-finite losses stop with a precise message; skipped bad samples are counted.

:class:`TrainingGuardHook` registers a forward hook on the trained model (it sees every training batch and its
loss dict, whatever trainer runs the step: SimpleTrainer, AMPTrainer, DDP-wrapped or not):

* the losses are checked with one device→host sync per iteration (``torch.isfinite`` over the stacked losses,
  the same cost as detectron2's own loss logging) *before* the backward pass, so a NaN never reaches the
  weights; a non-finite loss raises :class:`NonFiniteLossError` naming the loss(es), the iteration and the
  batch's video ids and frame indices;
* the mapper reports training samples it had to skip (bad frames, ``INPUT.ON_BAD_FRAME: "skip"``) in the next
  sample it returns (``"skipped_samples"``, so the count crosses DataLoader worker processes); the hook sums
  them over all processes and writes the running total to the event storage as ``data/skipped_samples``
  (kept in the checkpoint, so it continues over ``--resume``).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm

__all__ = ["NonFiniteLossError", "TrainingGuardHook", "check_losses_finite", "describe_batch"]


class NonFiniteLossError(FloatingPointError):
    """A training loss is NaN or infinite."""


def describe_batch(batched_inputs: Sequence[Dict[str, Any]]) -> str:
    """``"video 3 frames [4, 6]; video 9 frames [1, 2]"`` (image samples: ``"image 17 (file.jpg)"``)."""
    parts = []
    for d in batched_inputs:
        if "video_id" in d:
            part = f"video {d['video_id']}"
            if "frame_idx" in d:
                part += f" frames {list(d['frame_idx'])}"
        elif "image_id" in d:
            part = f"image {d['image_id']}"
        else:
            part = "sample"
        if "file_name" in d:
            part += f" ({d['file_name']})"
        parts.append(part)
    return "; ".join(parts) or "empty batch"


def check_losses_finite(loss_dict: Dict[str, torch.Tensor], iteration: int, batched_inputs: Sequence[Dict]) -> None:
    """Raise :class:`NonFiniteLossError` if any loss in ``loss_dict`` is NaN/inf (one host sync when all finite)."""
    names = [k for k, v in loss_dict.items() if isinstance(v, torch.Tensor)]
    if not names:
        return
    values = torch.stack([loss_dict[k].detach().float().sum() for k in names])
    if bool(torch.isfinite(values).all()):
        return
    values = values.cpu().tolist()  # error path only
    bad = ", ".join(f"{k} = {v}" for k, v in zip(names, values) if not math.isfinite(v))
    where = f" on rank {comm.get_rank()}" if comm.get_world_size() > 1 else ""
    raise NonFiniteLossError(
        f"non-finite loss at iteration {iteration}{where}: {bad}. Batch: {describe_batch(batched_inputs)}. "
        "Lower SOLVER.BASE_LR, enable SOLVER.CLIP_GRADIENTS, or check these samples' annotations."
    )


class TrainingGuardHook(HookBase):
    """Checks each training step's losses and reports ``data/skipped_samples`` (see module docstring).

    ``report_periods``: the total is gathered over processes and put in the storage when ``iter + 1`` is a
    multiple of one of them (pass the writer's and the checkpointer's periods) and at the last iteration.
    """

    def __init__(self, max_iter: int, report_periods: Sequence[int] = (20,)):
        self._max_iter = max_iter
        self._periods = [int(p) for p in report_periods if p and p > 0]
        self._handle = None
        self._local_skipped = 0  # this process, this run
        self._reported_total = 0  # all processes, including earlier runs (restored from the checkpoint)
        self._restored = 0

    def before_train(self):
        self._handle = self.trainer.model.register_forward_hook(self._on_forward)

    def after_train(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _on_forward(self, module, inputs, output):
        if not module.training or not isinstance(output, dict) or not inputs:
            return
        batched_inputs: List[Dict] = inputs[0] if isinstance(inputs[0], (list, tuple)) else []
        self._local_skipped += sum(int(d.get("skipped_samples", 0)) for d in batched_inputs if isinstance(d, dict))
        check_losses_finite(output, self.trainer.iter, batched_inputs)

    def after_step(self):
        it = self.trainer.iter
        if it != self._max_iter - 1 and not any((it + 1) % p == 0 for p in self._periods):
            return
        self._reported_total = self._restored + sum(comm.all_gather(self._local_skipped))
        self.trainer.storage.put_scalar("data/skipped_samples", self._reported_total, smoothing_hint=False)

    def state_dict(self):
        return {"skipped_samples": self._reported_total}

    def load_state_dict(self, state_dict):
        self._restored = self._reported_total = int(state_dict.get("skipped_samples", 0))
