"""A mixin that makes a detectron2 ``DefaultTrainer`` survive kills, corrupt checkpoints and bad losses.

    class Trainer(FaultTolerantTrainerMixin, DefaultTrainer): ...

* the trainer's checkpointer becomes a :class:`FaultTolerantCheckpointer` (atomic saves, ``--resume`` falls
  back past a corrupt checkpoint) before the checkpoint hook is built;
* a :class:`TrainingGuardHook` is inserted before the checkpoint hook (non-finite losses stop training with
  the batch's video ids and frame indices; ``data/skipped_samples`` is counted);
* with ``SOLVER.EMA.ENABLED``, a :class:`~projects.engine.ema.ModelEMAHook` too (a moving average of the weights,
  evaluated during training and copied into the model after the last iteration; saved with each checkpoint);
* ``metrics.json`` is strict JSON (an undefined metric is ``null``);
* on a resume, ``metrics.json`` is cut back to the records before the resumed iteration (a truncated last line
  left by a kill is dropped, and re-run iterations are not duplicated).
"""

from __future__ import annotations

import os

from detectron2.engine import hooks
from detectron2.utils import comm

from .checkpoint import FaultTolerantCheckpointer
from .ema import CHECKPOINT_KEY as EMA_CHECKPOINT_KEY
from .ema import ModelEMAHook
from .metrics_file import strict_default_writers, truncate_metrics_for_resume
from .training_guard import TrainingGuardHook

__all__ = ["FaultTolerantTrainerMixin", "WRITER_PERIOD"]

WRITER_PERIOD = 20  # DefaultTrainer.build_hooks' PeriodicWriter period
# The guard gathers over processes in after_step: it must sit before the first of these on every rank (the
# checkpointer and writer exist on the main process only, the evaluation hook, which also communicates, on all).
_GUARD_BEFORE = (hooks.PeriodicCheckpointer, hooks.EvalHook, hooks.PeriodicWriter)


class FaultTolerantTrainerMixin:
    """Put before ``DefaultTrainer`` in the bases (see module docstring)."""

    def build_hooks(self):
        # DefaultTrainer.__init__ calls build_hooks right after creating self.checkpointer.
        if not isinstance(self.checkpointer, FaultTolerantCheckpointer):
            old = self.checkpointer
            self.checkpointer = FaultTolerantCheckpointer(
                old.model, old.save_dir, save_to_disk=old.save_to_disk, **old.checkpointables
            )
        ret = super().build_hooks()
        guard = TrainingGuardHook(self.cfg.SOLVER.MAX_ITER, (WRITER_PERIOD, self.cfg.SOLVER.CHECKPOINT_PERIOD))
        position = next(
            (i for i, h in enumerate(ret) if isinstance(h, _GUARD_BEFORE)),
            len(ret),
        )
        ret.insert(position, guard)
        ema_cfg = self.cfg.SOLVER.get("EMA", None)
        if ema_cfg is not None and ema_cfg.ENABLED:
            ema = ModelEMAHook(self.checkpointer.model, ema_cfg.DECAY)
            self.checkpointer.add_checkpointable(EMA_CHECKPOINT_KEY, ema)
            ret.insert(position + 1, ema)  # before the checkpoint hook: model_final.pth holds the average
            for h in ret:
                if isinstance(h, hooks.EvalHook):
                    h._func = ema.evaluating_average(h._func)  # detectron2's EvalHook keeps its function there
        return ret

    def build_writers(self):
        """detectron2's default writers, with ``metrics.json`` written as strict JSON (``null``, never ``NaN``)."""
        return strict_default_writers(self.cfg.OUTPUT_DIR, self.max_iter)

    def resume_or_load(self, resume: bool = True):
        super().resume_or_load(resume=resume)
        if resume and self.start_iter > 0 and comm.is_main_process():
            truncate_metrics_for_resume(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"), self.start_iter)
