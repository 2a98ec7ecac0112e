"""``python -m vis_stg.convert_condinst IN.pth OUT.pkl``: an AdelaiDet CondInst COCO checkpoint -> VisSTG init.

AdelaiDet checkpoints are ``DetectionCheckpointer`` files (``{"model": {name: tensor}, ...}``) whose names
follow the CondInst module attributes:

- ``backbone.bottom_up.*`` (ResNet), ``backbone.fpn_lateral{3,4,5}`` / ``backbone.fpn_output{3,4,5}`` and
  ``backbone.top_block.p6/p7`` (P6 from P5): the same names as VisSTG's backbone -> copied unchanged
  (train VisSTG with ``MODEL.VIS_STG.P6_P7_FROM "p5"`` so that P6/P7 fit);
- ``controller.weight/bias`` (one conv giving the dynamic-head parameters; CondInst orders them weights then
  biases, coordinates first, as VisSTG's ``DynamicMaskHead``) -> the last conv of VisSTG's ``controller``,
  which is a 1×1 conv: converted only when CondInst's is 1×1 too (AdelaiDet's default is 3×3, which is
  then dropped as a whole rather than loading its bias alone);
- ``mask_branch.tower.<last>`` (the 1×1 conv giving the 8 mask channels) -> the last conv of VisSTG's
  ``mask_branch``; CondInst's ``refine``/``tower`` 3×3 convs carry BatchNorm, VisSTG's do not: not copied;
- the FCOS head (``proposal_generator.*``) has no VisSTG counterpart (VisSTG detects with CenterNet): dropped.

Tensors reach VisSTG where the shapes agree: detectron2's checkpointer skips (and logs) the others, and the
``VisSTG initialisation`` log line lists what stayed random. ``--controller-convs`` / ``--mask-branch-convs``
give the target's ``MASK.CONTROLLER_NUM_CONVS`` / ``MASK.BRANCH_NUM_CONVS`` (index of the last conv).
The output is a detectron2 model-zoo style pickle (numpy arrays, ``__author__``), loaded by exact names.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

__all__ = ["convert_condinst_state_dict", "main"]

_AUTHOR = "AdelaiDet CondInst, converted by vis_stg.convert_condinst"


def _last_conv_index(keys, prefix: str) -> Optional[int]:
    indices = [int(m.group(1)) for k in keys for m in [re.match(re.escape(prefix) + r"(\d+)\.weight$", k)] if m]
    return max(indices) if indices else None


def _is_1x1(weight) -> bool:
    return weight is not None and tuple(weight.shape[2:]) == (1, 1)


def convert_condinst_state_dict(
    state: Dict[str, torch.Tensor], controller_convs: int = 1, mask_branch_convs: int = 0
) -> Tuple[OrderedDict[str, np.ndarray], List[str]]:
    """CondInst names -> VisSTG names; returns ``(converted numpy state, dropped CondInst keys)``."""
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    dropped: List[str] = []
    tower_last = _last_conv_index(state, "mask_branch.tower.")
    for key, value in state.items():
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if key.startswith("backbone."):
            out[key] = array
        elif key in ("controller.weight", "controller.bias") and _is_1x1(state.get("controller.weight")):
            out[f"controller.layers.{2 * controller_convs}.{key.rsplit('.', 1)[1]}"] = array
        elif tower_last is not None and key in (
            f"mask_branch.tower.{tower_last}.weight",
            f"mask_branch.tower.{tower_last}.bias",
        ):
            out[f"mask_branch.layers.{2 * mask_branch_convs}.{key.rsplit('.', 1)[1]}"] = array
        else:
            dropped.append(key)
    if not any(k.startswith("backbone.bottom_up.") for k in out):
        raise ValueError("no 'backbone.bottom_up.*' tensors: this is not an AdelaiDet CondInst/FCOS checkpoint")
    return out, dropped


def _load_pth(path: str) -> Dict[str, torch.Tensor]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is reported with the file name
        raise ValueError(f"{path}: cannot be read as a torch checkpoint ({type(e).__name__}: {e})") from None
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (or a dict with 'model')")
    return state


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vis_stg.convert_condinst", description=__doc__.split("\n")[0])
    parser.add_argument("input", help="AdelaiDet CondInst checkpoint (.pth)")
    parser.add_argument("output", help="output .pkl for MODEL.WEIGHTS")
    parser.add_argument("--controller-convs", type=int, default=1, help="target MASK.CONTROLLER_NUM_CONVS")
    parser.add_argument("--mask-branch-convs", type=int, default=0, help="target MASK.BRANCH_NUM_CONVS")
    args = parser.parse_args(argv)
    try:
        state, dropped = convert_condinst_state_dict(
            _load_pth(args.input), args.controller_convs, args.mask_branch_convs
        )
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    tmp = args.output + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump({"model": state, "__author__": _AUTHOR, "matching_heuristics": False}, f)
    os.replace(tmp, args.output)
    n_backbone = sum(k.startswith("backbone.") for k in state)
    print(
        f"wrote {args.output}: {n_backbone} backbone/FPN tensors, {len(state) - n_backbone} mask-branch/"
        f"controller tensors; dropped {len(dropped)} CondInst tensors without a VisSTG counterpart "
        f"({', '.join(sorted({k.split('.')[0] for k in dropped})) or 'none'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
