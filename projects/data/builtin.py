"""Registration of the builtin video datasets under ``$DETECTRON2_DATASETS`` (default ``./datasets``).

Standard layouts (as distributed by the benchmarks)::

    ytvis_2019/{train,valid}.json   ytvis_2019/{train,valid}/JPEGImages/<video>/<frame>.jpg
    ytvis_2021/{train,valid}.json   ytvis_2021/{train,valid}/JPEGImages/...
    ovis/annotations/{train,valid}.json   ovis/{train,valid}/<video>/<frame>.jpg
    synthetic_vis/                  generated on first use by projects.data.synthetic
    coco/                           COCO (``coco_2017_train`` ...), registered by detectron2 itself

Every ``*_train`` video dataset also has a local ``*_train_sub`` / ``*_holdout`` split (projects.data.splits).

The official category lists are fixed here, so metadata is available without the (large) JSON files.
"""

from __future__ import annotations

import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from .categories import OVIS_CATEGORIES, YTVIS_2019_CATEGORIES, YTVIS_2021_CATEGORIES
from .splits import register_holdout_splits
from .ytvis import category_metadata, load_ytvis_json, register_ytvis_instances

_PREDEFINED = {
    "ytvis_2019_train": ("ytvis_2019/train/JPEGImages", "ytvis_2019/train.json", YTVIS_2019_CATEGORIES),
    "ytvis_2019_val": ("ytvis_2019/valid/JPEGImages", "ytvis_2019/valid.json", YTVIS_2019_CATEGORIES),
    "ytvis_2021_train": ("ytvis_2021/train/JPEGImages", "ytvis_2021/train.json", YTVIS_2021_CATEGORIES),
    "ytvis_2021_val": ("ytvis_2021/valid/JPEGImages", "ytvis_2021/valid.json", YTVIS_2021_CATEGORIES),
    "ovis_train": ("ovis/train", "ovis/annotations/train.json", OVIS_CATEGORIES),
    "ovis_val": ("ovis/valid", "ovis/annotations/valid.json", OVIS_CATEGORIES),
}

SYNTHETIC_SPLITS = {
    "synthetic_vis_train": "train",
    "synthetic_vis_train_large": "train_large",
    "synthetic_vis_val": "valid",
}


def datasets_root() -> str:
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def register_all_ytvis(root: str) -> None:
    for name, (image_root, json_file, categories) in _PREDEFINED.items():
        register_ytvis_instances(
            name, os.path.join(root, json_file), os.path.join(root, image_root), category_metadata(categories)
        )


def register_synthetic(root: str, subdir: str = "synthetic_vis") -> None:
    """Register synthetic_vis_{train,train_large,val}; each is generated on first use (atomically, once)."""
    from .synthetic_shapes import SYNTHETIC_CATEGORIES

    base = os.path.join(root, subdir)
    meta = category_metadata(SYNTHETIC_CATEGORIES)
    for name, split in SYNTHETIC_SPLITS.items():
        json_file, image_root = os.path.join(base, f"{split}.json"), os.path.join(base, split, "JPEGImages")

        def load(name=name, split=split):
            from .synthetic import ensure_synthetic_vis

            json_file, image_root = ensure_synthetic_vis(base, split)
            return load_ytvis_json(json_file, image_root, name)

        DatasetCatalog.register(name, load)
        MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="ytvis", **meta)
    register_holdout_splits("synthetic_vis_train")


_root = datasets_root()
register_all_ytvis(_root)
register_synthetic(_root)
