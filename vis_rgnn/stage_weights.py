"""Which weights an RGNN-VIS model takes from a checkpoint (App. A.1): stage 2 initialised from a stage-1 checkpoint
takes the segmenter only. Every checkpoint carries the stage of the model that wrote it (buffer ``STAGE_KEY``)."""

from __future__ import annotations

import logging
from typing import Sequence

__all__ = ["STAGE_KEY", "SEGMENTER_MODULES", "select_checkpoint_weights"]
logger = logging.getLogger(__name__)
STAGE_KEY = "rgnn_stage"  # buffer: the training stage of the model that wrote a checkpoint
SEGMENTER_MODULES = ("backbone", "detector")  # what stage 2 takes from a stage-1 checkpoint


def _top_level(keys: Sequence[str], prefix: str) -> str:
    return ", ".join(sorted({k[len(prefix) :].split(".")[0] for k in keys}))


def select_checkpoint_weights(module, state_dict, prefix, *_args) -> None:
    """``load_state_dict`` pre-hook of ``RGNNVIS`` (``module``: the model, with its ``stage``). Stage 2
    initialised from a stage-1 checkpoint (App. A.1) takes only the segmenter (``backbone.*``, ``detector.*``):
    the tracker, appearance net and heads of a stage-1 checkpoint are untrained (frozen in stage 1) and would
    overwrite stage 2's own initialisation (e.g. the zero-initialised scoring layer). A checkpoint without the
    stage marker (other tools, older runs) is treated as a segmenter checkpoint too, with a warning if that drops
    weights. The model's own stage marker is never overwritten: the checkpoint's entry is replaced by the model's
    own value (not removed), so a strict load (the demo's) sees neither a missing nor an unexpected
    ``rgnn_stage``."""
    marker = prefix + STAGE_KEY
    stored = state_dict.get(marker)
    state_dict[marker] = getattr(module, STAGE_KEY).detach().clone()
    if module.stage != 2 or (stored is not None and int(stored) == 2):
        return
    keep = tuple(prefix + name + "." for name in SEGMENTER_MODULES)
    dropped = [k for k in state_dict if k.startswith(prefix) and k != marker and not k.startswith(keep)]
    taken = [k for k in state_dict if k.startswith(keep)]
    for k in dropped:
        del state_dict[k]
    source = "a stage-1 checkpoint" if stored is not None else "a checkpoint without a stage marker"
    summary = ", ".join(f"{m}: {sum(k.startswith(prefix + m + '.') for k in taken)}" for m in SEGMENTER_MODULES)
    logger.info(
        f"RGNN stage 2 initialised from {source}: took the segmenter only ({summary} tensors)"
        + (f"; ignored {len(dropped)} tensors of {_top_level(dropped, prefix)}" if dropped else "")
    )
    if dropped and stored is None:
        logger.warning(
            f"RGNN stage 2: the checkpoint has no '{STAGE_KEY}' entry, so it was read as a "
            f"segmenter (stage-1) checkpoint and its {len(dropped)} tracker-side tensors were "
            f"ignored; a stage-2 checkpoint written by this code carries '{STAGE_KEY}' = 2"
        )
