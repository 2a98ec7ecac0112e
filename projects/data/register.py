"""Register a dataset from its JSON alone (``train_net.py --dataset NAME=JSON:IMAGE_ROOT``)."""

from __future__ import annotations

from detectron2.data.datasets import register_coco_instances

from .errors import DatasetFormatError
from .ytvis import category_metadata, read_json_object, register_ytvis_instances

__all__ = ["register_json_dataset"]


def register_json_dataset(name: str, json_file: str, image_root: str) -> str:
    """YouTube-VIS format (``videos``) -> a video dataset; COCO format (``images``) -> an image dataset (a
    training source, :mod:`projects.data.image_sources`). The JSON is read once now for its categories.
    Returns ``"video"`` or ``"image"``."""
    data = read_json_object(json_file, "'categories' and 'videos' or 'images'")
    if not isinstance(data.get("categories"), list):
        raise DatasetFormatError(json_file, "must be a JSON object with 'categories' and 'videos' or 'images'")
    if "videos" in data:
        register_ytvis_instances(name, json_file, image_root, category_metadata(data["categories"]))
        return "video"
    if "images" in data:
        classes = [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]  # as detectron2's loader
        register_coco_instances(name, {"thing_classes": classes}, json_file, image_root)
        return "image"
    raise DatasetFormatError(json_file, "has neither 'videos' (YouTube-VIS format) nor 'images' (COCO format)")
