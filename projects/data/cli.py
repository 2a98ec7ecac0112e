"""``--dataset NAME=JSON:IMAGE_ROOT`` command-line datasets, shared by ``train_net.py`` and ``demo/demo.py``."""

from __future__ import annotations

from typing import List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog

from .register import register_json_dataset

__all__ = ["parse_dataset_spec", "register_cli_datasets"]


def parse_dataset_spec(spec: str) -> tuple:
    """``"NAME=path/ann.json:path/frames"`` -> ``(name, json_file, image_root)``.

    The last ``:`` separates the two paths, so Windows-style or colon-containing JSON paths still work as long
    as the image root has no ``:``.
    """
    name, sep, paths = spec.partition("=")
    json_file, sep2, image_root = paths.rpartition(":")
    if not (sep and sep2 and name and json_file and image_root):
        raise ValueError(f"--dataset expects NAME=path/to/annotations.json:path/to/images, got {spec!r}")
    return name, json_file, image_root


def register_cli_datasets(specs: Optional[Sequence[str]]) -> List[str]:
    """Register every ``NAME=JSON:IMAGE_ROOT`` of ``specs`` (a YouTube-VIS video dataset or a COCO-format image
    dataset, :func:`projects.data.register_json_dataset`); return the names.

    Re-registering a name with the same files is a no-op (a second call in one process); the same name with
    other files, or a builtin name, is an error.
    """
    names = []
    for spec in specs or []:
        name, json_file, image_root = parse_dataset_spec(spec)
        if name in DatasetCatalog.list():
            meta = MetadataCatalog.get(name)
            if meta.get("json_file", None) == json_file and meta.get("image_root", None) == image_root:
                names.append(name)
                continue
            raise ValueError(f"--dataset {spec!r}: a dataset named {name!r} is already registered; choose another name")
        register_json_dataset(name, json_file, image_root)
        names.append(name)
    return names
