"""A DetectionCheckpointer whose saves are atomic and whose ``--resume`` survives a corrupt checkpoint.

* ``save`` / ``tag_last_checkpoint`` write through :class:`AtomicWritePathManager`: a kill during a save leaves
  the previous ``model_*.pth`` and ``last_checkpoint`` intact (plus a stale partial file, removed on resume).
* Loading a file that is truncated or not a checkpoint raises :class:`CorruptCheckpointError` naming the file.
* ``resume_or_load(..., resume=True)`` tries the checkpoint named by ``last_checkpoint`` and, if it is missing
  or corrupt, the previous ones (``model_NNNNNNN.pth`` with a smaller iteration, newest first), warning about
  each one skipped; ``last_checkpoint`` is then re-tagged to the one loaded.
* :func:`load_weights` loads a trained model for inference (``train_net.py --eval-only``, ``projects.engine.predictor``)
  strictly: a missing file, or a checkpoint that does not fill the model exactly (a parameter missing, unexpected
  or of another shape), is an error naming the file instead of detectron2's warning and a random layer.
* Every load logs one line of what the checkpoint initialised and what stays random (:func:`summarize_loaded`),
  e.g. ``VisSTG initialisation: loaded ResNet 265/265, FPN 12/12, P6/P7 4/4 tensors ...; random: det_head (12),
  graph (10), ...``: detectron2 lists unmatched keys one by one (and drops shape mismatches, counted as random).
"""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional, Tuple

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils import comm

from .atomic_io import AtomicWritePathManager, remove_stale_partials

__all__ = [
    "FaultTolerantCheckpointer",
    "CorruptCheckpointError",
    "WeightsMismatchError",
    "checkpoint_order_key",
    "load_weights",
    "summarize_loaded",
    "tensor_group",
]

logger = logging.getLogger(__name__)

_PERIODIC_RE = re.compile(r"^model_(\d+)\.pth$")

_BACKBONE_GROUPS = (("backbone.bottom_up.", "ResNet"), ("backbone.fpn_", "FPN"), ("backbone.top_block.", "P6/P7"))


def tensor_group(key: str) -> str:
    """Group of a state-dict key: a part of a detectron2 ResNet-FPN backbone or the top-level module name."""
    for prefix, name in _BACKBONE_GROUPS:
        if key.startswith(prefix):
            return name
    return key.split(".", 1)[0]


def summarize_loaded(
    model_keys: Iterable[str], missing_keys: Iterable[str], unexpected_keys: Iterable[str] = (), model: str = "model"
) -> Tuple[str, Dict[str, Tuple[int, int]]]:
    """``(log line, {group: (loaded, total)})`` for a load of ``model`` that left ``missing_keys`` uninitialised."""
    missing = set(missing_keys)
    counts: OrderedDict[str, List[int]] = OrderedDict()
    for key in model_keys:
        loaded_total = counts.setdefault(tensor_group(key), [0, 0])
        loaded_total[0] += key not in missing
        loaded_total[1] += 1
    loaded = [f"{g} {n}/{t}" for g, (n, t) in counts.items() if n > 0]
    random = [f"{g} ({t - n})" for g, (n, t) in counts.items() if n < t]
    unexpected = list(unexpected_keys)
    line = (
        f"{model} initialisation: loaded {', '.join(loaded) or 'nothing'} tensors from the checkpoint; "
        f"random (not in the checkpoint or of another shape): {', '.join(random) or 'none'}"
    )
    if unexpected:
        line += f"; {len(unexpected)} checkpoint tensors not used by {model}"
    return line, {g: (n, t) for g, (n, t) in counts.items()}


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be read (truncated, overwritten, not a checkpoint)."""

    def __init__(self, path: str, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"checkpoint {path} is corrupt or incomplete (or not a checkpoint at all): {problem}")


class WeightsMismatchError(ValueError):
    """A checkpoint that does not fit the model built from the config (strict loading, :func:`load_weights`, or a
    model's own ``load_state_dict`` check, raised with ``path`` "": :meth:`FaultTolerantCheckpointer.load` names the
    file)."""

    def __init__(self, path: str, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{path or 'the checkpoint'} does not match the config's model: {problem}")


def describe_load_error(e: Exception) -> str:
    """torch.load's error in one line: its first sentence (plus the unpickler's reason), without its advice to
    pass ``weights_only=False`` (not something to do with a file that is not a checkpoint)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    first = lines[0].split(". ")[0].rstrip(".")
    reason = next((line for line in lines if line.startswith("WeightsUnpickler error")), None)
    return f"{type(e).__name__}: {first}" + (f" ({reason})" if reason else "")


def checkpoint_order_key(file_name: str) -> float:
    """Order of the checkpoints detectron2 writes: ``model_NNNNNNN.pth`` by iteration, ``model_final.pth`` last.

    Other names get +inf (they are not ordered against each other and are never fallback candidates).
    """
    m = _PERIODIC_RE.match(os.path.basename(file_name))
    return float(m.group(1)) if m else float("inf")


class FaultTolerantCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer + atomic saves + corrupt-checkpoint detection and fallback (see module doc)."""

    def __init__(self, model, save_dir: str = "", *, save_to_disk: Optional[bool] = None, **checkpointables):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.path_manager = AtomicWritePathManager(self.path_manager)

    def load(self, path: str, *args, **kwargs) -> Dict[str, Any]:
        try:
            return super().load(path, *args, **kwargs)
        except WeightsMismatchError as e:
            if e.path:
                raise
            raise WeightsMismatchError(path, e.problem) from e  # a model's load_state_dict check: name the file
        finally:  # DetectionCheckpointer.load leaves this set when loading raises; the next load asserts on it
            self._parsed_url_during_load = None

    def _load_model(self, checkpoint: Dict[str, Any]):
        incompatible = super()._load_model(checkpoint)
        line, _ = summarize_loaded(
            self.model.state_dict().keys(),
            incompatible.missing_keys,
            incompatible.unexpected_keys,
            type(self.model).__name__,
        )
        logger.info(line)
        return incompatible

    def _load_file(self, filename: str) -> Dict[str, Any]:
        if os.path.isfile(filename) and os.path.getsize(filename) == 0:
            raise CorruptCheckpointError(filename, "the file is empty")
        try:
            loaded = super()._load_file(filename)
        except (FileNotFoundError, CorruptCheckpointError):
            raise
        except Exception as e:  # torch.load / pickle raise RuntimeError, EOFError, UnpicklingError, ...
            raise CorruptCheckpointError(filename, describe_load_error(e)) from e
        if not isinstance(loaded, dict) or "model" not in loaded:
            raise CorruptCheckpointError(filename, "it does not contain a 'model' state dict")
        return loaded

    def _fallback_candidates(self, failed: str) -> List[str]:
        """Periodic checkpoints in ``save_dir`` older than ``failed``, newest first."""
        limit = checkpoint_order_key(failed) if failed else float("inf")
        if not os.path.isdir(self.save_dir):
            return []
        names = [n for n in os.listdir(self.save_dir) if _PERIODIC_RE.match(n) and checkpoint_order_key(n) < limit]
        names.sort(key=checkpoint_order_key, reverse=True)
        return [os.path.join(self.save_dir, n) for n in names]

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        if not (resume and self.has_checkpoint()):
            return super().resume_or_load(path, resume=resume)
        if comm.is_main_process():
            remove_stale_partials(self.save_dir)
        tagged = self.get_checkpoint_file()
        candidates = [tagged] if tagged else []
        candidates += [c for c in self._fallback_candidates(tagged) if c != tagged]
        problems = []
        for candidate in candidates:
            if not os.path.isfile(candidate):
                problems.append(f"{candidate}: missing")
                logger.warning(
                    f"Checkpoint {candidate} named by last_checkpoint does not exist; trying the previous one"
                )
                continue
            try:
                checkpoint = self.load(candidate)
            except CorruptCheckpointError as e:
                problems.append(str(e))
                logger.warning(f"{e}; trying the previous checkpoint")
                continue
            if candidate != tagged:
                logger.warning(f"Resuming from {candidate}, the newest complete checkpoint (skipped: {problems})")
                if self.save_to_disk:
                    self.tag_last_checkpoint(os.path.basename(candidate))
            return checkpoint
        raise CorruptCheckpointError(
            tagged or os.path.join(self.save_dir, "last_checkpoint"),
            f"no complete checkpoint to resume from in {self.save_dir} ({'; '.join(problems) or 'none found'})",
        )


class _RecordingCheckpointer(FaultTolerantCheckpointer):
    """Keeps what detectron2 only logs: the keys that did not load (``self.incompatible``)."""

    def _load_model(self, checkpoint: Dict[str, Any]):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def load_weights(model, weights: str) -> Dict[str, Any]:
    """Load the trained checkpoint ``weights`` into ``model`` strictly; return the rest of the checkpoint.

    Errors (one line, naming the file): an empty ``weights`` (``ValueError``), a missing file
    (``FileNotFoundError``), an unreadable one (:class:`CorruptCheckpointError`), and any parameter or buffer
    missing from the checkpoint, present in it but not in the model, or of another shape
    (:class:`WeightsMismatchError`): detectron2 would log these and leave the layers randomly initialised.
    """
    if not weights:
        raise ValueError("MODEL.WEIGHTS is empty: give the trained checkpoint (e.g. output/.../model_final.pth)")
    if "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file not found: {weights}")
    checkpointer = _RecordingCheckpointer(model)
    checkpoint = checkpointer.load(weights)
    incompatible = checkpointer.incompatible
    problems = []
    if incompatible.missing_keys:
        problems.append(f"{len(incompatible.missing_keys)} parameters missing (e.g. {incompatible.missing_keys[:3]})")
    if incompatible.unexpected_keys:
        problems.append(
            f"{len(incompatible.unexpected_keys)} parameters the model does not have "
            f"(e.g. {incompatible.unexpected_keys[:3]})"
        )
    if incompatible.incorrect_shapes:
        k, shape_ckpt, shape_model = incompatible.incorrect_shapes[0]
        problems.append(
            f"{len(incompatible.incorrect_shapes)} parameters with another shape (e.g. {k}: checkpoint "
            f"{tuple(shape_ckpt)} vs model {tuple(shape_model)})"
        )
    if problems:
        raise WeightsMismatchError(weights, "; ".join(problems))
    return checkpoint
