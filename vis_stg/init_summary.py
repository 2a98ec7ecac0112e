"""One log line after every ``load_state_dict`` of VisSTG: what the checkpoint initialised, what stays random.

detectron2's ``DetectionCheckpointer`` lists unmatched keys one by one (and drops shape mismatches, which then
count as missing here); this summary groups the model's tensors into the backbone parts (ResNet, FPN
P3–P5, P6/P7) and the VisSTG modules, e.g. ``loaded ResNet 265/265, FPN 12/12, P6/P7 4/4; random: det_head
(12), graph (10), ...``. Installed by :func:`install_init_summary` as a ``load_state_dict`` post-hook.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Dict, Iterable, List, Tuple

from torch import nn

__all__ = ["install_init_summary", "summarize_loaded", "tensor_group"]

logger = logging.getLogger(__name__)

_BACKBONE_GROUPS = (("backbone.bottom_up.", "ResNet"), ("backbone.fpn_", "FPN"), ("backbone.top_block.", "P6/P7"))


def tensor_group(key: str) -> str:
    """Group of a state-dict key: a backbone part or the top-level module name."""
    for prefix, name in _BACKBONE_GROUPS:
        if key.startswith(prefix):
            return name
    return key.split(".", 1)[0]


def summarize_loaded(
    model_keys: Iterable[str], missing_keys: Iterable[str], unexpected_keys: Iterable[str] = ()
) -> Tuple[str, Dict[str, Tuple[int, int]]]:
    """``(log line, {group: (loaded, total)})`` for a load that left ``missing_keys`` uninitialised."""
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
        f"VisSTG initialisation: loaded {', '.join(loaded) or 'nothing'} tensors from the checkpoint; "
        f"random (not in the checkpoint or of another shape): {', '.join(random) or 'none'}"
    )
    if unexpected:
        line += f"; {len(unexpected)} checkpoint tensors not used by VisSTG"
    return line, {g: (n, t) for g, (n, t) in counts.items()}


def install_init_summary(model: nn.Module) -> None:
    """Log :func:`summarize_loaded` after each ``model.load_state_dict`` (e.g. ``DetectionCheckpointer.load``)."""

    def hook(module: nn.Module, incompatible_keys) -> None:
        line, _ = summarize_loaded(
            module.state_dict().keys(), incompatible_keys.missing_keys, incompatible_keys.unexpected_keys
        )
        logger.info(line)

    model.register_load_state_dict_post_hook(hook)
