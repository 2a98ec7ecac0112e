"""The class list a model was trained on, stored with the model so that inference needs no registered dataset.

At training time ``train_net.py`` writes ``OUTPUT_DIR/model_metadata.json`` (next to ``config.yaml``) and every
checkpoint carries the same dict under ``"model_metadata"``. ``VideoPredictor`` / ``demo/demo.py`` read it back
(:func:`resolve_inference_metadata`), so ``demo.py --config-file OUTPUT_DIR/config.yaml MODEL.WEIGHTS
OUTPUT_DIR/model_final.pth`` works for a model trained on a ``--dataset`` that the demo never registered.

The dict: ``{"dataset": name, "thing_classes": [K names], "thing_dataset_id_to_contiguous_id": {id: 0..K-1},
"thing_colors": [K RGB triplets], "meta_architecture": "VisSTG" | "RGNNVIS" | ..., "rgnn_stage": 1 | 2 (RGNN-VIS)}``
(JSON turns the int keys into strings; :func:`validate_model_metadata` turns them back). The model fields let
inference build the model the weights belong to: another meta-architecture is an error naming the file, and an
RGNN-VIS model runs in the stage it was trained in (checkpoints written before these fields existed: the stage
comes from the model's ``rgnn_stage`` buffer in the checkpoint).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Optional, Tuple

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from ..engine.checkpoint import CorruptCheckpointError, describe_load_error
from .build import set_num_classes
from .image_sources import target_classes

__all__ = [
    "METADATA_FILE",
    "CHECKPOINT_KEY",
    "ModelMetadataCheckpointable",
    "dataset_metadata",
    "training_metadata",
    "validate_model_metadata",
    "write_model_metadata",
    "read_model_metadata",
    "resolve_inference_metadata",
    "apply_model_fields",
]

METADATA_FILE = "model_metadata.json"
CHECKPOINT_KEY = "model_metadata"
ARCH_KEY = "meta_architecture"
STAGE_KEY = "rgnn_stage"  # also the name of RGNNVIS's stage buffer in the model's state dict
RGNN_ARCH = "RGNNVIS"
logger = logging.getLogger(__name__)


def dataset_metadata(name: str) -> Dict[str, Any]:
    """The class list of a registered dataset (``ValueError`` naming it when it has none)."""
    meta = MetadataCatalog.get(name)
    classes = meta.get("thing_classes", None)
    if not classes:
        raise ValueError(f"dataset {name!r} has no class names (thing_classes) in its metadata")
    mapping = meta.get("thing_dataset_id_to_contiguous_id", None) or {i + 1: i for i in range(len(classes))}
    out = {"dataset": name, "thing_classes": list(classes), "thing_dataset_id_to_contiguous_id": dict(mapping)}
    colors = meta.get("thing_colors", None)
    if colors:
        out["thing_colors"] = [list(c) for c in colors]
    return validate_model_metadata(out, f"dataset {name!r}")


def training_metadata(cfg) -> Dict[str, Any]:
    """The class list the model is trained on: that of the dataset ``MODEL.NUM_CLASSES`` follows (the first
    video dataset of ``DATASETS.TRAIN``, else of ``DATASETS.TEST``; image sources are mapped to it), plus the
    model fields (meta-architecture, RGNN-VIS stage)."""
    meta = dataset_metadata(target_classes(cfg.DATASETS.TRAIN, cfg.DATASETS.TEST)[1])
    meta[ARCH_KEY] = cfg.MODEL.META_ARCHITECTURE
    if cfg.MODEL.META_ARCHITECTURE == RGNN_ARCH:
        meta[STAGE_KEY] = int(cfg.MODEL.RGNN.STAGE)
    return meta


def validate_model_metadata(meta: Any, source: str) -> Dict[str, Any]:
    """Check the dict's shape (names, a bijective id map onto 0..K-1); int keys restored. Errors name ``source``."""
    if not isinstance(meta, dict) or not isinstance(meta.get("thing_classes"), list) or not meta["thing_classes"]:
        raise ValueError(f"{source}: model metadata needs a non-empty 'thing_classes' list")
    names = meta["thing_classes"]
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"{source}: 'thing_classes' must be strings")
    raw = meta.get("thing_dataset_id_to_contiguous_id") or {i + 1: i for i in range(len(names))}
    try:
        mapping = {int(k): int(v) for k, v in dict(raw).items()}
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: 'thing_dataset_id_to_contiguous_id' must map ints to ints ({e})") from None
    if sorted(mapping.values()) != list(range(len(names))):
        raise ValueError(f"{source}: 'thing_dataset_id_to_contiguous_id' must map onto 0..{len(names) - 1}")
    out = dict(meta, thing_classes=list(names), thing_dataset_id_to_contiguous_id=mapping)
    colors = out.get("thing_colors")
    if colors is not None and len(colors) != len(names):
        out.pop("thing_colors")
    return out


def write_model_metadata(meta: Dict[str, Any], output_dir: str) -> str:
    """Write ``output_dir/model_metadata.json`` atomically (temp file + rename); return its path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, METADATA_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, path)
    return path


class ModelMetadataCheckpointable:
    """A detectron2 checkpointable that stores the class list in every checkpoint (``checkpointer.checkpointables``)."""

    def __init__(self, meta: Dict[str, Any]):
        self.meta = meta

    def state_dict(self) -> Dict[str, Any]:
        return dict(self.meta)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """On ``--resume``: the datasets of this run decide; a different class list is worth a warning."""
        if list(state.get("thing_classes", [])) != list(self.meta["thing_classes"]):
            logger.warning(
                f"the checkpoint was trained on classes {state.get('thing_classes')} but this run uses "
                f"{self.meta['thing_classes']}; the checkpoints written from now on store the latter"
            )


def _from_checkpoint(weights: str) -> Optional[Dict[str, Any]]:
    if not weights.endswith((".pth", ".pt")):
        return None  # .pkl (Detectron/caffe2 model zoo) files carry no class list
    try:
        ckpt = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # the same one line as the weight loader's (before any "no class names" error)
        raise CorruptCheckpointError(weights, describe_load_error(e)) from None
    meta = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if meta is None:
        return None
    meta = validate_model_metadata(meta, f"{weights} [{CHECKPOINT_KEY}]")
    model = ckpt.get("model")
    if STAGE_KEY not in meta and isinstance(model, dict) and isinstance(model.get(STAGE_KEY), torch.Tensor):
        meta[STAGE_KEY] = int(model[STAGE_KEY])  # written before the metadata had the stage
    return meta


def read_model_metadata(weights: str) -> Tuple[Optional[Dict[str, Any]], str]:
    """The class list stored with ``weights``: in the checkpoint, else ``model_metadata.json`` beside it.

    Returns ``(meta or None, where it came from)``.
    """
    if not weights or "://" in weights or not os.path.isfile(weights):
        return None, ""
    meta = _from_checkpoint(weights)
    if meta is not None:
        return meta, weights
    path = os.path.join(os.path.dirname(os.path.abspath(weights)), METADATA_FILE)
    if os.path.isfile(path):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return validate_model_metadata(data, path), path
    return None, ""


def resolve_inference_metadata(cfg, dataset: Optional[str] = None) -> Dict[str, Any]:
    """The class list to run ``cfg``'s model with, and ``cfg.MODEL.NUM_CLASSES`` set to match (cfg not frozen).

    Order: ``dataset`` (e.g. the demo's ``--dataset``) > the list stored with ``cfg.MODEL.WEIGHTS`` > the first
    registered dataset of ``cfg.DATASETS.TEST`` / ``TRAIN``. ``MODEL.NUM_CLASSES`` -1 follows the list; any
    other value must equal its length. When both ``dataset`` and the stored list exist, their class counts must
    agree. Every failure is one ``ValueError`` line saying what to pass.
    """
    stored, stored_from = read_model_metadata(cfg.MODEL.WEIGHTS)
    if dataset is not None:
        meta, source = dataset_metadata(dataset), f"dataset {dataset!r}"
        if stored is not None and len(stored["thing_classes"]) != len(meta["thing_classes"]):
            raise ValueError(
                f"{source} has {len(meta['thing_classes'])} classes but the model ({stored_from}) was trained on "
                f"{len(stored['thing_classes'])}: {stored['thing_classes']}"
            )
    elif stored is not None:
        meta, source = stored, stored_from
    else:
        registered = [n for n in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN) if n in DatasetCatalog.list()]
        with_classes = [n for n in registered if MetadataCatalog.get(n).get("thing_classes", None)]
        if not with_classes:
            named = list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN)
            raise ValueError(
                "cannot find the model's class names: MODEL.WEIGHTS stores none and the config's datasets "
                f"{named} are not registered here; pass --dataset NAME=JSON:IMAGE_ROOT (the training JSON)"
            )
        meta, source = dataset_metadata(with_classes[0]), f"dataset {with_classes[0]!r}"
    if stored is not None:
        apply_model_fields(cfg, stored, cfg.MODEL.WEIGHTS)
    num = len(meta["thing_classes"])
    set_num_classes(cfg, num, f"the class list of {source} has {num} classes")
    return meta


def apply_model_fields(cfg, stored: Dict[str, Any], weights: str) -> None:
    """Make ``cfg`` build the model ``weights`` belong to (``stored``: their metadata; cfg not frozen).

    Another ``MODEL.META_ARCHITECTURE`` is a ``ValueError`` naming the file; an RGNN-VIS checkpoint sets
    ``MODEL.RGNN.STAGE`` to the stage it was trained in (a warning when the config said otherwise: stage 1
    evaluates the segmenter with the heuristic association, stage 2 the trained tracker).
    """
    arch = stored.get(ARCH_KEY)
    if arch is not None and arch != cfg.MODEL.META_ARCHITECTURE:
        raise ValueError(
            f"{weights} holds a {arch} model but the config builds {cfg.MODEL.META_ARCHITECTURE}: use the config "
            "it was trained with (its OUTPUT_DIR/config.yaml)"
        )
    stage = stored.get(STAGE_KEY)
    if stage is not None and cfg.MODEL.META_ARCHITECTURE == RGNN_ARCH and int(stage) != cfg.MODEL.RGNN.STAGE:
        logger.warning(
            f"MODEL.RGNN.STAGE {cfg.MODEL.RGNN.STAGE} -> {int(stage)}: {weights} is a stage-{int(stage)} checkpoint"
        )
        cfg.MODEL.RGNN.STAGE = int(stage)
