"""Convert a checkpoint of the authors' RGNN-VIS release (github joakimjohnander/RGNNVIS; written by
``rgnnvis/engines/vis_trainer.py``, model built by ``runfiles/w49/rgnnvis_resnet50.py``) to a detectron2 checkpoint
for ``configs/vis_rgnn/release_R50_ytvis19.yaml``::

    python -m vis_rgnn.convert_release vps063_v4_ep0120.pth.tar release_r50_stage1.pkl

The file is read without executing its pickle (``vis_rgnn/release_checkpoint.py``). Every tensor of its ``net``
dict is mapped or the conversion stops with an error naming the key; converted shapes are checked against the
model the config builds. The released weights hold ``backbone.*`` (torchvision ResNet-50) and ``detector.*``
(their YOLACT: 41 classes, background first, re-ordered here to this project's background-last layout as in
``vis_rgnn/convert_yolact.py``, whose key mapping is reused): the output is a stage-1 checkpoint (``rgnn_stage`` =
1), so stage 2 trains the tracker from it as the release's runfile does. Every tracker module of the release
maps to the release config's model: the GNN and memory (``track_detection_matcher``,
``track_descriptor.memory_layers``, ``init_var_background``; :func:`release_tracker_key`) and the appearance /
scoring / mask modules (``appnet``, ``detection_descriptor_extractor``, ``track_descriptor.out_layers`` /
``init_var``, ``track_module``; ``_TRACKER_KEYS``). A checkpoint holding the tracker converts as a whole
stage-2 model (``rgnn_stage`` = 2, and ``rgnn_tracker_version`` = the current one: the release's tracker is the
layout this code's tracker reads); ``--segmenter-only`` takes its backbone + detector alone (a stage-1 checkpoint).
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import re
import sys
from typing import Callable, Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from .convert_yolact import _background_last, convert_key
from .release_checkpoint import read_release_checkpoint
from .stage_weights import STAGE_KEY, TRACKER_VERSION, TRACKER_VERSION_KEY

__all__ = [
    "RELEASE_CONFIG",
    "SEGMENTER_PREFIXES",
    "TRACKER_PREFIXES",
    "release_key",
    "release_tracker_key",
    "convert_release_state_dict",
    "target_shapes_from_config",
    "main",
]
logger = logging.getLogger(__name__)

RELEASE_CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs/vis_rgnn/release_R50_ytvis19.yaml")
SEGMENTER_PREFIXES = ("backbone.", "detector.")
# Top-level modules of the release's RGNN (rgnnvis/models/rgnn.py ``RGNN.__init__``) beyond the segmenter.
TRACKER_PREFIXES = (
    "appnet.",
    "detection_descriptor_extractor.",
    "track_detection_matcher.",
    "track_descriptor.",
    "track_module.",
)
NUM_ANCHORS = 3  # the release's YOLACT: aspect ratios {1, 1/2, 2} / 1.8, one scale per level


# Release appearance / scoring / mask modules -> this project's parameters (with the release's DETECTION_DESCRIPTOR
# and MASK_REWEIGHT_INPUT, vis_rgnn/config.py), with how each tensor changes.
_TRACKER_KEYS = {
    "appnet.feat_nets.bb_feats_s8.0.": "appearance.convs.res4.",  # 1x1 conv on layer3 (stride 16)
    "appnet.feat_nets.bb_feats_s16.0.": "appearance.convs.res5.",  # 1x1 conv on layer4 (stride 32)
    "detection_descriptor_extractor.appearance_layers.layers.0.": "appearance.residual.fc1.",
    "detection_descriptor_extractor.appearance_layers.layers.2.": "appearance.residual.fc2.",
    "detection_descriptor_extractor.appearance_layers.layers.4.": "appearance.residual.fc3.",
    "track_descriptor.out_layers.mean_eta.": "tracker.appearance_update.alpha.",
    "track_descriptor.out_layers.var_eta.": "tracker.appearance_update.beta.",
    "track_descriptor.out_layers.var_new.": "tracker.appearance_update.var_new.",
    "track_descriptor.init_var": "tracker.appearance_update.init_var",
    "track_descriptor.out_layers.lbscores.": "tracker.scoring.cls.",  # 41 classes, background first -> last
    "track_module.embedding_to_seg_layers.0.": "tracker.mask_reweighting.embed.",
    "track_module.seg_layers.0.": "tracker.mask_reweighting.conv1.",  # input channels [map, box, emb] -> [emb, ..]
    "track_module.seg_layers.2.": "tracker.mask_reweighting.conv2.",
}


def _tracker_tensor(key: str, t: torch.Tensor) -> torch.Tensor:
    """The release tensor ``key`` in this project's layout: the track class layer's outputs background-last;
    the re-weighting CNN's first convolution with its input channels [map, box, embedding] -> [embedding, map,
    box]."""
    if key.startswith("track_descriptor.out_layers.lbscores."):
        return _background_last(t, 1)
    if key == "track_module.seg_layers.0.weight":
        if t.dim() != 4 or t.shape[1] < 2:
            raise ValueError(f"{key}: expected a (C, 2 + E, 3, 3) convolution, got {tuple(t.shape)}")
        return torch.cat([t[:, 2:], t[:, :2]], dim=1)
    return t


# ---------------------------------------------------------------------------------------------------------------
# The tracker's GNN and recurrent memory (track_detection_matcher, track_descriptor.memory_layers and
# init_var_background; docs/rgnn_release_port.md items 1, 2, 4, 5): the release's GraphNets layers.0..3 are our
# gnn.blocks.0 / residuals.0 / blocks.1 / residuals.1 (MODEL.RGNN.GNN.NUM_BLOCKS 2).
_GNN_ELEMENT = {  # release GraphNet entry -> (our GNNBlock submodule, our residual ModuleDict key)
    "bkgdet": ("empty_edge", "empty_edges"),
    "trkdet": ("edge", "edges"),
    "bkg": ("empty_node", "empty"),
    "trk": ("track_node", "tracks"),
    "det": ("det_node", "dets"),
}
# a detection gates its new-track edge with its own gate (DetFanatic: bkgdet_sigmoid next to trkdet_sigmoid)
_GNN_GATE = {
    ("bkg", "bkgdet"): "gate",
    ("trk", "trkdet"): "gate",
    ("det", "trkdet"): "gate",
    ("det", "bkgdet"): "empty_gate",
}
_LSTM = {"tracks": "gate", "background": "empty_gate"}


def _class_columns(k1: int) -> list:
    """Columns of the release's K+1 class logits (background first) in this project's order (background last)."""
    return list(range(1, k1)) + [0]


def _first_block_columns(kind: str, n_in: int, dim: int) -> list:
    """Input columns of the release's first-block Linear layers, in the order of our concatenations
    (vis_rgnn.graph_inputs.graph_inputs + graph.TrackDetectionGNN): the release concatenates
    [track or empty-track vertex (D), detection vertex (K+1 logits, 4 box), edge features] ("trkdet" /
    "bkgdet") and [detection vertex, aggregated edges (D)] ("det"); ours [detection vertex, edge features,
    vertex] and [detection vertex, aggregated edges], with the classes background last."""
    if kind == "det":
        k1 = n_in - 4 - dim
        return _class_columns(k1) + list(range(k1, n_in))
    n_edge = 2 if kind == "trkdet" else 1
    k1 = n_in - dim - 4 - n_edge
    return [dim + c for c in _class_columns(k1)] + list(range(dim + k1, n_in)) + list(range(dim))


def _later_block_columns(kind: str, dim: int) -> list:
    """The release's [vertex, detection, edge] (3 D) -> ours [edge, vertex, detection] (``GNNBlock.forward``)."""
    return list(range(2 * dim, 3 * dim)) + list(range(2 * dim))


def _lstm_rows(t: torch.Tensor) -> torch.Tensor:
    """The release's gate order (forget, input, output, candidate) -> ours (input, forget, output, candidate)
    (vis_rgnn.recurrent.LSTMGate); rows of a (4 D, ...) weight or a (4 D,) bias."""
    f, i, o, g = t.chunk(4, dim=0)
    return torch.cat([i, f, o, g], dim=0)


def release_tracker_key(key: str) -> Optional[Tuple[str, Callable[[Mapping[str, torch.Tensor]], torch.Tensor]]]:
    """Release key of the GNN / track-memory modules -> (our name, function of the release's ``net`` giving
    the converted tensor), or None for a key of another module. ``memory_layers.*.prev_out.bias`` maps to
    no tensor of its own: ours has one bias, ``input.bias`` = ``x.bias`` + ``prev_out.bias`` (returned with
    name "" to mark it consumed)."""
    m = re.fullmatch(r"track_detection_matcher\.layers\.(\d+)\.(bkgdet|trkdet|bkg|trk|det)\.(.+)", key)
    if m:
        layer, element, rest = int(m.group(1)), m.group(2), m.group(3)
        block, residual = divmod(layer, 2)
        sub, res_key = _GNN_ELEMENT[element]
        if residual:
            r = re.fullmatch(r"out\.layers\.([02])\.(weight|bias)", rest)
            if r is None:
                return None
            fc = "fc1" if r.group(1) == "0" else "fc2"
            return f"tracker.gnn.residuals.{block}.{res_key}.{fc}.{r.group(2)}", lambda net: net[key]
        r = re.fullmatch(r"(bkgdet|trkdet)_sigmoid\.([02])\.(weight|bias)", rest)
        if r:
            gate = _GNN_GATE.get((element, r.group(1)))
            if gate is None:
                return None
            return f"tracker.gnn.blocks.{block}.{sub}.{gate}.{r.group(2)}.{r.group(3)}", lambda net: net[key]
        r = re.fullmatch(r"out\.(0|2\.layers\.0|2\.layers\.2)\.(weight|bias)", rest)
        if r is None:
            return None
        part, param = r.group(1), r.group(2)
        if part != "0":  # the first block's edge MLP: Linear, ReLU, Residual
            if element not in ("bkgdet", "trkdet"):
                return None
            fc = "fc1" if part.endswith("0") else "fc2"
            return f"tracker.gnn.blocks.{block}.{sub}.2.{fc}.{param}", lambda net: net[key]
        name = f"tracker.gnn.blocks.{block}.{sub}.0.{param}" if element in ("bkgdet", "trkdet") else None
        if name is None:
            name = f"tracker.gnn.blocks.{block}.{sub}.update.{param}"
        if param == "bias" or element in ("bkg", "trk"):
            return name, lambda net: net[key]

        def permuted(net: Mapping[str, torch.Tensor]) -> torch.Tensor:
            w = net[key]
            dim = w.shape[0]
            if block == 0:
                cols = _first_block_columns(element, w.shape[1], dim)
            else:
                cols = _later_block_columns(element, dim) if element != "det" else list(range(w.shape[1]))
            if len(cols) != w.shape[1] or sorted(cols) != list(range(w.shape[1])):
                raise ValueError(f"{key}: unexpected input width {w.shape[1]}")
            return w[:, cols]

        return name, permuted
    m = re.fullmatch(r"track_detection_matcher\.score_layers\.(trkdet|bkgdet)\.(weight|bias)", key)
    if m:
        head = "match" if m.group(1) == "trkdet" else "new_track"
        return f"tracker.association_heads.{head}.{m.group(2)}", lambda net: net[key]
    m = re.fullmatch(r"track_descriptor\.memory_layers\.(tracks|background)\.(x|prev_out)\.(weight|bias)", key)
    if m:
        gate, layer, param = _LSTM[m.group(1)], m.group(2), m.group(3)
        base = f"track_descriptor.memory_layers.{m.group(1)}"
        if param == "weight":
            ours = "input" if layer == "x" else "hidden"
            return f"tracker.{gate}.{ours}.weight", lambda net: _lstm_rows(net[key])
        if layer == "prev_out":
            return "", lambda net: net[key]
        return f"tracker.{gate}.input.bias", lambda net: _lstm_rows(
            net[f"{base}.x.bias"] + net[f"{base}.prev_out.bias"]
        )
    if key == "track_descriptor.init_var_background":
        return "tracker.empty_init_var", lambda net: net[key]
    return None


def release_key(key: str) -> str:
    """Release segmenter key -> this project's name. The release's backbone is torchvision's ResNet
    (``layer1``..``layer4``) and its detector a YOLACT whose names are dbolya's under ``detector.``; both are
    rewritten to dbolya's layout and mapped by :func:`vis_rgnn.convert_yolact.convert_key`. Raises KeyError for
    an unknown key. Tracker keys of the GNN / memory:
    :func:`release_tracker_key`."""
    mapped = release_tracker_key(key)
    if mapped is not None:
        return mapped[0]
    for prefix, name in _TRACKER_KEYS.items():
        if key.startswith(prefix) and (prefix.endswith(".") or key == prefix):
            return name + key[len(prefix) :]
    m = re.fullmatch(r"backbone\.layer([1-4])\.(.+)", key)
    if m:
        return convert_key(f"backbone.layers.{int(m.group(1)) - 1}.{m.group(2)}")
    if re.fullmatch(r"backbone\.(conv1\.weight|bn1\.\w+)", key):
        return convert_key(key)
    if key.startswith("detector."):
        try:
            return convert_key(key[len("detector.") :])
        except KeyError:
            pass
    raise KeyError(f"unexpected release checkpoint key {key!r} (not part of the release's RGNN)")


def convert_release_state_dict(
    net: Mapping[str, torch.Tensor],
    target_shapes: Optional[Mapping[str, Tuple[int, ...]]] = None,
    segmenter_only: bool = False,
) -> Tuple[Dict[str, np.ndarray], Dict[str, int]]:
    """Returns ``{name: ndarray}`` (plus ``rgnn_stage`` = 1 or 2 and ``rgnn_tracker_version``) and a summary.
    ``target_shapes``: the state-dict shapes of the model that will load the result; every converted tensor must
    exist there with the same shape. ``segmenter_only``: drop the tracker modules instead of refusing them. Raises
    KeyError / ValueError naming the offending keys (all of them)."""
    tracker = [k for k in net if k.startswith(TRACKER_PREFIXES)]
    out: Dict[str, np.ndarray] = {}
    errors = []
    for key, value in net.items():
        if key.startswith(TRACKER_PREFIXES) and segmenter_only:
            continue
        tracker_entry = release_tracker_key(key) if key.startswith(TRACKER_PREFIXES) else None
        if tracker_entry is not None:
            name, make = tracker_entry
            if not name:  # consumed by another key's tensor (the LSTM's second bias)
                continue
            try:
                t = make(net).detach().cpu()
            except (KeyError, ValueError) as e:
                errors.append(f"{key}: {e}")
                continue
        else:
            try:
                name = release_key(key)
            except KeyError as e:
                errors.append(str(e.args[0]))
                continue
            t = value.detach().cpu()
            if key.startswith(TRACKER_PREFIXES):
                try:
                    t = _tracker_tensor(key, t)
                except ValueError as e:
                    errors.append(str(e))
                    continue
        if name in out:
            errors.append(f"two release keys map to {name!r} (second: {key!r})")
            continue
        if name == "detector.head.cls.weight" or name == "detector.head.cls.bias":
            try:
                t = _background_last(t, NUM_ANCHORS)
            except ValueError as e:
                errors.append(f"{key}: {e}")
                continue
        if target_shapes is not None:
            want = target_shapes.get(name)
            if want is None:
                errors.append(f"{key} -> {name}: the model built from the config has no such parameter")
                continue
            if tuple(t.shape) != tuple(want):
                errors.append(f"{key} -> {name}: shape {tuple(t.shape)} in the checkpoint, {tuple(want)} in the model")
                continue
        out[name] = t.numpy()
    if errors:
        raise KeyError("; ".join(errors))
    if not any(k.startswith("backbone.") for k in out) or not any(k.startswith("detector.") for k in out):
        raise KeyError("the checkpoint has no backbone.* or no detector.* tensors: not an RGNN-VIS release model")
    # With its tracker converted the checkpoint is a whole stage-2 model (every tracker tensor must be there).
    full = bool(tracker) and not segmenter_only
    if target_shapes is not None:
        parts = ("backbone.", "detector.", "tracker.", "appearance.") if full else ("backbone.", "detector.")
        missing = sorted(k for k in target_shapes if k.startswith(parts) and k not in out and k != STAGE_KEY)
        if missing:
            what = "model" if full else "segmenter"
            raise KeyError(f"the release checkpoint lacks {len(missing)} {what} tensors of the model: {missing[:8]}")
    out[STAGE_KEY] = np.array(2 if full else 1, dtype=np.int64)
    # the release's tracker is the layout this code's tracker reads (stage_weights.TRACKER_VERSION)
    out[TRACKER_VERSION_KEY] = np.array(TRACKER_VERSION, dtype=np.int64)
    conf = net["detector.prediction_layers.0.conf_layer.weight"]
    summary = {
        "tensors": len(out) - 2,  # without the two markers
        "backbone": sum(k.startswith("backbone.bottom_up.") for k in out),
        "fpn": sum(k.startswith("backbone.") and not k.startswith("backbone.bottom_up.") for k in out),
        "detector": sum(k.startswith("detector.") for k in out),
        "tracker": sum(k.startswith(("tracker.", "appearance.")) for k in out),
        "tracker_dropped": len(tracker) if segmenter_only else 0,
        "classes": conf.shape[0] // NUM_ANCHORS,
    }
    return out, summary


def target_shapes_from_config(config_file: str, opts=()) -> Dict[str, Tuple[int, ...]]:
    """State-dict shapes of the model ``config_file`` builds (on the CPU)."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from . import meta_arch  # noqa: F401  (registers RGNNVIS)
    from .config import add_rgnn_config

    cfg = get_cfg()
    add_rgnn_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    model = build_model(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="release checkpoint (.pth.tar, torch.save({'net': ..., ...}))")
    parser.add_argument("output", help="detectron2 checkpoint to write (.pkl)")
    parser.add_argument("--config-file", default=RELEASE_CONFIG, help="config whose model checks the shapes")
    parser.add_argument(
        "--segmenter-only", action="store_true", help="convert backbone + detector and drop the tracker modules"
    )
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides of --config-file: KEY VALUE ...")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        net, meta = read_release_checkpoint(args.source)
    except ValueError as e:
        raise SystemExit(str(e)) from e
    shapes = target_shapes_from_config(args.config_file, args.opts)
    try:
        converted, summary = convert_release_state_dict(net, shapes, segmenter_only=args.segmenter_only)
    except KeyError as e:
        raise SystemExit(f"{args.source}: {e.args[0]}") from e
    with open(args.output, "wb") as f:
        pickle.dump({"model": converted, "__author__": "vis_rgnn.convert_release", "matching_heuristics": False}, f)
    logger.info(
        "%s (epoch %s) -> %s: stage-%d checkpoint, %d tensors (backbone %d, FPN %d, detector %d, tracker %d), "
        "%d classes (background first -> last); %d release tracker tensors dropped",
        args.source,
        meta.get("epoch", "?"),
        args.output,
        int(converted[STAGE_KEY]),
        summary["tensors"],
        summary["backbone"],
        summary["fpn"],
        summary["detector"],
        summary["tracker"],
        summary["classes"],
        summary["tracker_dropped"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
