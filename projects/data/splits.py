"""Deterministic local train / held-out splits of annotated video datasets (the local YouTube-VIS protocol).

YouTube-VIS valid/test have no public annotations; RGNN-VIS (Johnander et al., GCPR 2021, §4) held out 200
training videos for hyper-parameter selection. ``<stem>_train_sub`` / ``<stem>_holdout`` split ``<stem>_train``:

- **Which videos**: the ``size`` videos whose ``sha256(f"{SPLIT_SEED}:{video_id}")`` is smallest are held out.
  The fixed seed :data:`SPLIT_SEED` is independent of config, environment, Python version and JSON order, so
  every user gets the same split of the same JSON; a larger size holds out a superset of a smaller one.
- **How many** (``DATASETS.HOLDOUT_SIZE``, -1 = the default of the source): YouTube-VIS 2019: 200 (the paper's
  choice, 8.9 % of 2,238 videos); YouTube-VIS 2021: 300 (10 % of 2,985); OVIS: 60 (10 % of 607); any other
  dataset: 10 % of its videos (at least 1).
- **Lazily**: nothing is read before the split is used (``DatasetCatalog.get``).
- **Recorded**: once :func:`configure_splits` has been given the config (the loader builders do it), each use
  writes ``OUTPUT_DIR/splits/<source>.json`` (seed, size, held-out video ids) and refuses to overwrite a
  different split recorded there (e.g. another ``HOLDOUT_SIZE``: train_sub and holdout would overlap). A split
  used for testing also gets its ground truth ``OUTPUT_DIR/splits/<name>_gt.json`` for :class:`YTVISEvaluator`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Dict, Iterable, List, Optional, Set

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils import comm

logger = logging.getLogger(__name__)

__all__ = [
    "SPLIT_SEED",
    "DEFAULT_HOLDOUT_SIZES",
    "holdout_video_ids",
    "split_names",
    "register_holdout_splits",
    "configure_splits",
    "is_split",
    "write_split_ground_truth",
]

SPLIT_SEED = 2021
DEFAULT_HOLDOUT_SIZES = {"ytvis_2019_train": 200, "ytvis_2021_train": 300, "ovis_train": 60}
DEFAULT_HOLDOUT_FRACTION = 0.1

# name -> (source dataset, "train_sub" | "holdout")
_SPLITS: Dict[str, tuple] = {}
_SETTINGS: Dict[str, Any] = {"holdout_size": -1, "output_dir": None}


def holdout_video_ids(video_ids: Iterable[Any], size: int, seed: int = SPLIT_SEED) -> Set[Any]:
    """The ``size`` ids with the smallest ``sha256(f"{seed}:{id}")`` (order- and platform-independent)."""
    ids = list(video_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("video ids are not unique")
    if not 1 <= size < len(ids):
        raise ValueError(f"a holdout of {size} videos needs 1 <= size < number of videos ({len(ids)})")
    return set(sorted(ids, key=lambda v: hashlib.sha256(f"{seed}:{v}".encode()).hexdigest())[:size])


def split_names(source: str) -> tuple:
    """``ytvis_2019_train`` -> (``ytvis_2019_train_sub``, ``ytvis_2019_holdout``); a trailing ``_train`` is dropped."""
    stem = source[: -len("_train")] if source.endswith("_train") else source
    return f"{stem}_train_sub", f"{stem}_holdout"


def is_split(name: str) -> bool:
    return name in _SPLITS


def configure_splits(cfg) -> None:
    """Take ``DATASETS.HOLDOUT_SIZE`` and ``OUTPUT_DIR`` from the config (called by the loader builders)."""
    size = int(cfg.DATASETS.HOLDOUT_SIZE)
    if size == 0 or size < -1:
        raise ValueError(f"DATASETS.HOLDOUT_SIZE must be -1 (dataset default) or a number of videos >= 1, got {size}")
    _SETTINGS.update(holdout_size=size, output_dir=cfg.OUTPUT_DIR or None)


def _holdout_size(source: str, num_videos: int) -> int:
    if _SETTINGS["holdout_size"] > 0:
        return _SETTINGS["holdout_size"]
    return DEFAULT_HOLDOUT_SIZES.get(source, max(1, round(DEFAULT_HOLDOUT_FRACTION * num_videos)))


def _record(source: str, held: Set[Any], size: int, num_videos: int) -> None:
    out = _SETTINGS["output_dir"]
    if not out or not comm.is_main_process():
        return
    path = os.path.join(out, "splits", f"{source}.json")
    record = {
        "source": source,
        "seed": SPLIT_SEED,
        "holdout_size": size,
        "num_videos": num_videos,
        "holdout_video_ids": sorted(held, key=str),
    }
    if os.path.isfile(path):
        with open(path) as f:
            old = json.load(f)
        if old.get("holdout_video_ids") != record["holdout_video_ids"]:
            raise ValueError(
                f"{path} records another held-out split of '{source}' (holdout_size {old.get('holdout_size')}, now "
                f"{size}): train_sub and holdout of this run would overlap the recorded ones. Keep "
                "DATASETS.HOLDOUT_SIZE, or use a new OUTPUT_DIR"
            )
        return
    _atomic_json_dump(record, path)
    logger.info(f"Held-out split of '{source}': {size} of {num_videos} videos, ids written to {path}")


def _atomic_json_dump(obj: Any, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.{comm.get_rank()}"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def _load_split(name: str) -> List[Dict[str, Any]]:
    source, part = _SPLITS[name]
    videos = DatasetCatalog.get(source)
    if not videos or "annotations" not in videos[0]:
        raise ValueError(f"'{name}' splits '{source}', which has no annotations: only annotated videos can be held out")
    size = _holdout_size(source, len(videos))
    try:
        held = holdout_video_ids([v["video_id"] for v in videos], size)
    except ValueError as e:
        raise ValueError(f"cannot split '{source}' into '{name}': {e} (DATASETS.HOLDOUT_SIZE)") from e
    _record(source, held, size, len(videos))
    return [v for v in videos if (v["video_id"] in held) == (part == "holdout")]


def register_holdout_splits(source: str) -> tuple:
    """Register the two splits of the YouTube-VIS-format dataset ``source`` (lazily); returns their names.

    Names already in the catalog are left alone (a warning says so).
    """
    src_meta = MetadataCatalog.get(source)
    names = split_names(source)
    for name, part in zip(names, ("train_sub", "holdout")):
        if name in DatasetCatalog.list():
            logger.warning(f"'{name}' is already registered: the {part} split of '{source}' is not registered")
            continue
        _SPLITS[name] = (source, part)
        DatasetCatalog.register(name, lambda name=name: _load_split(name))
        meta = {k: v for k, v in src_meta.as_dict().items() if k not in ("name", "json_file")}
        MetadataCatalog.get(name).set(split_of=source, split_part=part, **meta)
    return names


def write_split_ground_truth(name: str, videos: Optional[List[Dict[str, Any]]] = None) -> str:
    """Write the split's YouTube-VIS ground truth (its videos + annotations) for the evaluator; returns the path.

    ``videos``: the split's dataset dicts if already loaded (else read from the catalog). Sets the split's
    ``MetadataCatalog`` ``json_file`` to the file. Needs :func:`configure_splits` (OUTPUT_DIR).
    """
    source, _ = _SPLITS[name]
    out = _SETTINGS["output_dir"]
    if not out:
        raise ValueError(f"no OUTPUT_DIR configured: cannot write the ground truth of '{name}'")
    keep = {v["video_id"] for v in (DatasetCatalog.get(name) if videos is None else videos)}
    with open(MetadataCatalog.get(source).json_file) as f:
        data = json.load(f)
    data["videos"] = [v for v in data["videos"] if v["id"] in keep]
    data["annotations"] = [a for a in data.get("annotations", []) if a["video_id"] in keep]
    data.setdefault("info", {})
    data["info"] = dict(data["info"] or {}, split=name, split_of=source, split_seed=SPLIT_SEED)
    path = os.path.join(out, "splits", f"{name}_gt.json")
    _atomic_json_dump(data, path)  # every rank writes the same content (atomic), so every rank can read it
    meta = MetadataCatalog.get(name).as_dict()
    if meta.get("json_file") != path:
        MetadataCatalog.remove(name)
        meta.pop("name", None)
        meta["json_file"] = path
        MetadataCatalog.get(name).set(**meta)
    return path
