"""Convert an official YOLACT checkpoint (dbolya/yolact, a plain ``torch.save`` of ``Yolact.state_dict()``) to
a detectron2 checkpoint for ``YolactSegmenter`` / ``RGNNVIS`` with ``build_yolact_resnet_fpn_backbone`` and
``DETECTOR.ANCHOR_LAYOUT yolact``::

    python -m vis_rgnn.convert_yolact yolact_resnet50_54_800000.pth yolact_r50_coco.pkl   # R50 (yolact_R50_coco.yaml)
    python -m vis_rgnn.convert_yolact yolact_base_54_800000.pth yolact_r101_coco.pkl      # R101 (yolact_base)

Every source tensor is mapped (an unknown key is an error), the class layer's 81 outputs per anchor are
re-ordered from YOLACT's background-first to this project's background-last (the softmax is unchanged), and the
output is the pickle format detectron2's ``DetectionCheckpointer`` reads (``{"model": {name: ndarray},
"__author__": ..., "matching_heuristics": False}``), so names must match exactly.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
import sys
from typing import Dict, Mapping, Tuple

import numpy as np
import torch

__all__ = ["convert_yolact_state_dict", "convert_key", "main"]
logger = logging.getLogger(__name__)

_BN = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
_FPN_LEVELS = {0: 5, 1: 4, 2: 3}  # YOLACT stores lateral / prediction layers from C5 down to C3
_PROTO = {"0": "pre.0", "2": "pre.2", "4": "pre.4", "8": "post.0", "10": "post.2"}
_HEAD = {"upfeature.0": "tower.0", "bbox_layer": "box", "conf_layer": "cls", "mask_layer": "coef"}


def convert_key(key: str) -> str:
    """Official YOLACT parameter name -> detectron2 name (``backbone.bottom_up.*``, ``backbone.fpn_*``,
    ``detector.*``). Raises KeyError for a name outside YOLACT-ResNet-FPN's layout."""
    m = re.fullmatch(r"backbone\.conv1\.weight", key)
    if m:
        return "backbone.bottom_up.stem.conv1.weight"
    m = re.fullmatch(r"backbone\.bn1\.(\w+)", key)
    if m and m.group(1) in _BN:
        return f"backbone.bottom_up.stem.conv1.norm.{m.group(1)}"
    m = re.fullmatch(r"backbone\.layers\.(\d+)\.(\d+)\.(.+)", key)
    if m:
        stage, block, rest = int(m.group(1)) + 2, m.group(2), m.group(3)
        prefix = f"backbone.bottom_up.res{stage}.{block}"
        c = re.fullmatch(r"conv([123])\.weight", rest)
        if c:
            return f"{prefix}.conv{c.group(1)}.weight"
        b = re.fullmatch(r"bn([123])\.(\w+)", rest)
        if b and b.group(2) in _BN:
            return f"{prefix}.conv{b.group(1)}.norm.{b.group(2)}"
        if rest == "downsample.0.weight":
            return f"{prefix}.shortcut.weight"
        d = re.fullmatch(r"downsample\.1\.(\w+)", rest)
        if d and d.group(1) in _BN:
            return f"{prefix}.shortcut.norm.{d.group(1)}"
    m = re.fullmatch(r"fpn\.(lat|pred)_layers\.(\d)\.(weight|bias)", key)
    if m and int(m.group(2)) in _FPN_LEVELS:
        kind = "lateral" if m.group(1) == "lat" else "output"
        return f"backbone.fpn_{kind}{_FPN_LEVELS[int(m.group(2))]}.{m.group(3)}"
    m = re.fullmatch(r"fpn\.downsample_layers\.([01])\.(weight|bias)", key)
    if m:
        return f"backbone.p{6 + int(m.group(1))}.{m.group(2)}"
    m = re.fullmatch(r"proto_net\.(\d+)\.(weight|bias)", key)
    if m and m.group(1) in _PROTO:
        return f"detector.protonet.{_PROTO[m.group(1)]}.{m.group(2)}"
    m = re.fullmatch(r"prediction_layers\.0\.(upfeature\.0|bbox_layer|conf_layer|mask_layer)\.(weight|bias)", key)
    if m:
        return f"detector.head.{_HEAD[m.group(1)]}.{m.group(2)}"
    m = re.fullmatch(r"semantic_seg_conv\.(weight|bias)", key)
    if m:
        return f"detector.semantic.{m.group(1)}"
    raise KeyError(f"unexpected YOLACT checkpoint key {key!r} (not part of YOLACT-ResNet-FPN)")


def _background_last(t: torch.Tensor, num_anchors: int) -> torch.Tensor:
    """(A * (K+1), ...) class-layer outputs, background first per anchor -> background last."""
    if t.shape[0] % num_anchors:
        raise ValueError(f"class layer has {t.shape[0]} outputs, not a multiple of {num_anchors} anchors")
    per = t.reshape(num_anchors, t.shape[0] // num_anchors, *t.shape[1:])
    return torch.cat([per[:, 1:], per[:, :1]], dim=1).reshape(t.shape)


def convert_yolact_state_dict(state: Mapping[str, torch.Tensor]) -> Tuple[Dict[str, np.ndarray], Dict[str, int]]:
    """Returns the converted ``{name: ndarray}`` and a summary (tensors per part, anchors, classes, prototypes)."""
    bbox = state.get("prediction_layers.0.bbox_layer.weight")
    conf = state.get("prediction_layers.0.conf_layer.weight")
    if bbox is None or conf is None:
        raise KeyError("not a YOLACT checkpoint: no prediction_layers.0.bbox_layer / conf_layer weights")
    num_anchors = bbox.shape[0] // 4
    out: Dict[str, np.ndarray] = {}
    for key, value in state.items():
        if key.startswith("prediction_layers.") and not key.startswith("prediction_layers.0."):
            raise KeyError(f"unexpected YOLACT checkpoint key {key!r}: the prediction head must be shared")
        name = convert_key(key)
        if name in out:
            raise KeyError(f"two YOLACT keys map to {name!r}")
        t = value.detach().cpu()
        if key.startswith("prediction_layers.0.conf_layer."):
            t = _background_last(t, num_anchors)
        out[name] = t.numpy()
    summary = {
        "tensors": len(out),
        "backbone": sum(k.startswith("backbone.bottom_up.") for k in out),
        "fpn": sum(k.startswith("backbone.") and not k.startswith("backbone.bottom_up.") for k in out),
        "detector": sum(k.startswith("detector.") for k in out),
        "anchors_per_location": num_anchors,
        "classes": conf.shape[0] // num_anchors - 1,
        "prototypes": state["prediction_layers.0.mask_layer.weight"].shape[0] // num_anchors,
    }
    return out, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="official YOLACT .pth (e.g. yolact_resnet50_54_800000.pth)")
    parser.add_argument("output", help="detectron2 checkpoint to write (.pkl)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        state = torch.load(args.source, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt / not a torch file
        raise SystemExit(f"{args.source}: cannot be read as a torch checkpoint ({e})") from e
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SystemExit(f"{args.source}: expected a state dict of tensors (torch.save(yolact.state_dict()))")
    try:
        converted, summary = convert_yolact_state_dict(state)
    except (KeyError, ValueError) as e:
        raise SystemExit(f"{args.source}: {e}") from e
    with open(args.output, "wb") as f:
        pickle.dump({"model": converted, "__author__": "vis_rgnn.convert_yolact", "matching_heuristics": False}, f)
    logger.info(
        "%s -> %s: %d tensors (backbone %d, FPN %d, detector %d); %d anchors/location, %d classes, %d prototypes",
        args.source,
        args.output,
        summary["tensors"],
        summary["backbone"],
        summary["fpn"],
        summary["detector"],
        summary["anchors_per_location"],
        summary["classes"],
        summary["prototypes"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
