"""Still-image datasets (COCO format, e.g. detectron2's ``coco_2017_train``) as training sources of video models.

Any dataset in ``DATASETS.TRAIN`` whose metadata ``evaluator_type`` is not ``"ytvis"`` is an image dataset: its
detectron2 dicts (``file_name``, ``annotations`` with contiguous ``category_id``) are re-labelled to the classes
of the video datasets by a *category map* (``DATASETS.CATEGORY_MAP``: a JSON file ``{source category name:
video class name}``, or the name of a shipped map in ``projects/data/category_maps/``). Annotations of unmapped
categories are dropped (those objects become background), then images without a mapped non-crowd object are
dropped. Each kept annotation gets ``id`` = its index + 1, the track id its pseudo-video frames share.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from .errors import DatasetFormatError

logger = logging.getLogger(__name__)

__all__ = [
    "SHIPPED_CATEGORY_MAPS",
    "is_video_dataset",
    "not_registered_message",
    "load_category_map",
    "target_classes",
    "load_image_source",
]

_MAP_DIR = os.path.join(os.path.dirname(__file__), "category_maps")
SHIPPED_CATEGORY_MAPS = sorted(
    f[: -len(".json")] for f in (os.listdir(_MAP_DIR) if os.path.isdir(_MAP_DIR) else []) if f.endswith(".json")
)


def is_video_dataset(name: str) -> bool:
    """Registered by this project's YouTube-VIS loader (``evaluator_type == "ytvis"``)."""
    if name not in DatasetCatalog.list():
        raise KeyError(not_registered_message(name))
    return MetadataCatalog.get(name).get("evaluator_type") == "ytvis"


def not_registered_message(name: str) -> str:
    """One line for a dataset name that is not registered: how to register it, and close registered names."""
    close = difflib.get_close_matches(name, DatasetCatalog.list(), n=3)
    hint = f" (registered names close to it: {', '.join(close)})" if close else ""
    return f"dataset '{name}' is not registered: pass --dataset {name}=JSON:IMAGE_ROOT{hint}"


def load_category_map(spec: str, classes: Sequence[str]) -> Dict[str, str]:
    """Read and check a category map (path, or a name in :data:`SHIPPED_CATEGORY_MAPS`).

    Raises :class:`DatasetFormatError` naming the file for invalid JSON, a non-object or non-string entries, and
    for a target name that is not one of ``classes``.
    """
    path = os.path.join(_MAP_DIR, f"{spec}.json") if spec in SHIPPED_CATEGORY_MAPS else spec
    if not os.path.isfile(path):
        raise DatasetFormatError(
            path, f"category map does not exist (shipped maps: {', '.join(SHIPPED_CATEGORY_MAPS)})"
        )
    try:
        with open(path) as f:
            mapping = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFormatError(path, f"category map is not valid JSON ({e})") from e
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise DatasetFormatError(path, "category map must be a JSON object {source category name: video class name}")
    unknown = sorted({v for v in mapping.values() if v not in classes})
    if unknown:
        raise DatasetFormatError(path, f"maps to {unknown}, which are not classes of the video data ({list(classes)})")
    return mapping


def target_classes(train: Sequence[str], test: Sequence[str] = ()) -> Tuple[List[str], str]:
    """The class list every training source is mapped to, and the dataset it comes from.

    The first video dataset of ``train``, else of ``test``, else (image datasets only, no category map) the
    first training dataset.
    """
    for name in list(train) + list(test):
        if is_video_dataset(name):
            return list(MetadataCatalog.get(name).thing_classes), name
    names = list(train) or list(test)
    if not names:
        raise ValueError("DATASETS.TRAIN and DATASETS.TEST are both empty")
    if MetadataCatalog.get(names[0]).get("thing_classes") is None:  # a COCO-format JSON not read yet
        DatasetCatalog.get(names[0])
    return list(MetadataCatalog.get(names[0]).thing_classes), names[0]


def load_image_source(
    name: str, classes: Sequence[str], category_map: Optional[Dict[str, str]], reference: str = "the video data"
) -> List[Dict[str, Any]]:
    """The image dataset ``name`` as image records labelled with ``classes`` (see the module doc)."""
    dicts = DatasetCatalog.get(name)  # first: detectron2's COCO loader sets thing_classes when it reads the JSON
    source_classes = list(MetadataCatalog.get(name).get("thing_classes") or [])
    if category_map is None:
        if source_classes != list(classes):
            raise ValueError(
                f"image dataset '{name}' has other categories than '{reference}': set DATASETS.CATEGORY_MAP to a "
                f"map from its names to the video classes (shipped: {', '.join(SHIPPED_CATEGORY_MAPS)})"
            )
        category_map = {c: c for c in classes}
    unused = sorted(set(category_map) - set(source_classes))
    if unused:
        logger.warning(f"category map entries {unused} are not categories of '{name}' (ignored for it)")
    to_target = {i: classes.index(category_map[c]) for i, c in enumerate(source_classes) if c in category_map}

    records, dropped_objects, total_objects = [], 0, 0
    for d in dicts:
        if "file_name" not in d or "annotations" not in d:
            raise ValueError(f"'{name}' is not an annotated image dataset (a dict has no 'file_name'/'annotations')")
        annos = []
        for a in d["annotations"]:
            total_objects += 1
            if a.get("iscrowd", 0) or a["category_id"] not in to_target:
                dropped_objects += 1
                continue
            annos.append(dict(a, category_id=to_target[a["category_id"]], id=len(annos) + 1))
        if annos:
            records.append(dict(d, annotations=annos, image_source=name))
    if not records:
        raise ValueError(f"no image of '{name}' has an object of a mapped category (check DATASETS.CATEGORY_MAP)")
    logger.info(
        f"Image source '{name}': {len(records)} images with mapped objects; {dropped_objects} of {total_objects} "
        f"objects dropped (crowd or unmapped category); {len(to_target)} of {len(source_classes)} categories mapped"
    )
    return records
