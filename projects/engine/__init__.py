"""Training engine pieces: crash-safe files and checkpoints, resume fallback, loss and data fault guards."""

from .atomic_io import AtomicWritePathManager, atomic_open, atomic_write, remove_stale_partials
from .checkpoint import CorruptCheckpointError, FaultTolerantCheckpointer, WeightsMismatchError, load_weights
from .metrics_file import truncate_metrics_for_resume
from .trainer import FaultTolerantTrainerMixin
from .training_guard import NonFiniteLossError, TrainingGuardHook, check_losses_finite, describe_batch

__all__ = [
    "AtomicWritePathManager",
    "atomic_open",
    "atomic_write",
    "remove_stale_partials",
    "CorruptCheckpointError",
    "FaultTolerantCheckpointer",
    "WeightsMismatchError",
    "load_weights",
    "truncate_metrics_for_resume",
    "FaultTolerantTrainerMixin",
    "NonFiniteLossError",
    "TrainingGuardHook",
    "check_losses_finite",
    "describe_batch",
]
