"""Which weights an RGNN-VIS model takes from a checkpoint (App. A.1): stage 2 initialised from a stage-1 checkpoint
takes the segmenter only. Every checkpoint carries the stage of the model that wrote it (buffer ``STAGE_KEY``) and the
layout its tracker weights were trained with (buffer ``TRACKER_VERSION_KEY``)."""

from __future__ import annotations

import logging
from typing import Sequence

from projects.engine.checkpoint import WeightsMismatchError

__all__ = ["STAGE_KEY", "TRACKER_VERSION", "TRACKER_VERSION_KEY", "SEGMENTER_MODULES", "select_checkpoint_weights"]
logger = logging.getLogger(__name__)
STAGE_KEY = "rgnn_stage"  # buffer: the training stage of the model that wrote a checkpoint
SEGMENTER_MODULES = ("backbone", "detector")  # what stage 2 takes from a stage-1 checkpoint
# buffer: the tracker layout the checkpoint's tracker weights were trained with. 2: the release's tracker is the only
# behaviour; no entry / 1: trained with this project's former tracker alternatives (same names and shapes, other
# inputs), so the weights would load silently into a different tracker.
TRACKER_VERSION_KEY = "rgnn_tracker_version"
TRACKER_VERSION = 2


def _top_level(keys: Sequence[str], prefix: str) -> str:
    return ", ".join(sorted({k[len(prefix) :].split(".")[0] for k in keys}))


def _check_tracker_version(stored) -> None:
    """Refuses stage-2 tracker weights of another tracker layout (``stored``: the checkpoint's
    ``TRACKER_VERSION_KEY`` entry or None). :class:`WeightsMismatchError` without a path: the checkpointers of
    ``projects.engine`` re-raise it naming the file."""
    if stored is not None and int(stored) == TRACKER_VERSION:
        return
    if stored is not None and int(stored) > TRACKER_VERSION:
        problem = (
            f"its tracker weights were written by newer code ('{TRACKER_VERSION_KEY}' = {int(stored)}, this code "
            f"reads {TRACKER_VERSION}); load it with the code that wrote it"
        )
    else:
        found = (
            f"without '{TRACKER_VERSION_KEY}'" if stored is None else f"with '{TRACKER_VERSION_KEY}' = {int(stored)}"
        )
        problem = (
            f"a stage-2 checkpoint {found} (the current tracker is {TRACKER_VERSION}): its tracker was trained with "
            "the tracker from before the release's tracker became the only one and cannot be used; retrain stage 2 "
            "from its stage-1 weights (MODEL.WEIGHTS = the stage-1 checkpoint)"
        )
    raise WeightsMismatchError("", problem)


def select_checkpoint_weights(module, state_dict, prefix, *_args) -> None:
    """``load_state_dict`` pre-hook of ``RGNNVIS`` (``module``: the model, with its ``stage``). Stage 2
    initialised from a stage-1 checkpoint (App. A.1) takes only the segmenter (``backbone.*``, ``detector.*``):
    the tracker, appearance net and heads of a stage-1 checkpoint are untrained (frozen in stage 1) and would
    overwrite stage 2's own initialisation (e.g. the zero-initialised scoring layer). A checkpoint without the
    stage marker (other tools, older runs) is treated as a segmenter checkpoint too, with a warning if that drops
    weights. Stage 2 takes everything from a stage-2 checkpoint only if its tracker has this code's layout
    (``TRACKER_VERSION_KEY``): older tracker weights have the same names and shapes but were trained on other
    inputs, so they are an error, not a silently different model. The model's own markers are never
    overwritten: the checkpoint's entries are replaced by the model's own values (not removed), so a strict load
    (the demo's) sees neither a missing nor an unexpected ``rgnn_stage`` / ``rgnn_tracker_version``."""
    marker = prefix + STAGE_KEY
    stored = state_dict.get(marker)
    stored_version = state_dict.get(prefix + TRACKER_VERSION_KEY)
    markers = (marker, prefix + TRACKER_VERSION_KEY)
    for key in (STAGE_KEY, TRACKER_VERSION_KEY):
        state_dict[prefix + key] = getattr(module, key).detach().clone()
    if module.stage != 2:
        if stored is not None and int(stored) == 1:
            _complete_untrained_tracker(module, state_dict, prefix)
        return
    if stored is not None and int(stored) == 2:
        _check_tracker_version(stored_version)
        return
    keep = tuple(prefix + name + "." for name in SEGMENTER_MODULES)
    dropped = [k for k in state_dict if k.startswith(prefix) and k not in markers and not k.startswith(keep)]
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


def _complete_untrained_tracker(module, state_dict, prefix: str) -> None:
    """A stage-1 model reading a stage-1 checkpoint: everything outside the segmenter is untrained there (frozen in
    stage 1), so a checkpoint of another tracker layout (written before the release's tracker became the only one)
    still evaluates as stage 1: its tracker-side tensors the model lacks are dropped and the model's own initial
    values fill the ones it misses, with a log line. The segmenter must match as usual (a strict load's error)."""
    own = module.state_dict(prefix=prefix)
    keep = tuple(prefix + name + "." for name in SEGMENTER_MODULES)
    extra = [k for k in state_dict if k.startswith(prefix) and k not in own and not k.startswith(keep)]
    missing = [k for k in own if k not in state_dict and not k.startswith(keep)]
    for k in extra:
        del state_dict[k]
    for k in missing:
        state_dict[k] = own[k].detach().clone()
    if extra or missing:
        logger.info(
            f"RGNN stage 1 from a stage-1 checkpoint of another tracker layout: its untrained tracker-side tensors "
            f"were replaced ({len(missing)} initialised here: {_top_level(missing, prefix)}; {len(extra)} dropped: "
            f"{_top_level(extra, prefix)})"
        )
