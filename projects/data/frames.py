"""Reading video frames with clear errors, and a lazy frame sequence for long test videos."""

from __future__ import annotations

import os
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .errors import DatasetFormatError

__all__ = ["read_frame", "LazyVideoFrames", "image_to_tensor"]


def read_frame(file_name: str, image_format: str, expected_hw: Optional[tuple] = None) -> np.ndarray:
    """Read one frame as an (H, W, 3) uint8 array; a missing or corrupt file raises an error naming it."""
    if not os.path.isfile(file_name):
        raise DatasetFormatError(file_name, "frame file does not exist")
    try:
        image = utils.read_image(file_name, format=image_format)
    except Exception as e:  # PIL raises several types for truncated/corrupt files
        raise DatasetFormatError(file_name, f"cannot decode frame ({type(e).__name__}: {e})") from e
    if expected_hw is not None and tuple(image.shape[:2]) != tuple(expected_hw):
        raise DatasetFormatError(
            file_name,
            f"frame is {image.shape[1]}x{image.shape[0]} but the annotation says {expected_hw[1]}x{expected_hw[0]}",
        )
    return image


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) array -> (C, H, W) tensor, as detectron2 models expect."""
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


class LazyVideoFrames(Sequence[torch.Tensor]):
    """A video's frames, each read and resized only when accessed: a 10,000-frame video never sits in memory.

    Indexing returns a (3, h, w) uint8 tensor in ``image_format`` after ``augmentations`` (deterministic test-time
    resizing). Picklable (it holds only paths and augmentation parameters).
    """

    def __init__(
        self,
        file_names: List[str],
        augmentations: List[T.Augmentation],
        image_format: str,
        height: Optional[int] = None,
        width: Optional[int] = None,
    ):
        self.file_names = list(file_names)
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.expected_hw = (height, width) if height is not None and width is not None else None

    def __len__(self) -> int:
        return len(self.file_names)

    def __getitem__(self, t: int) -> torch.Tensor:  # type: ignore[override]
        if not -len(self) <= t < len(self):
            raise IndexError(t)
        image = read_frame(self.file_names[t], self.image_format, self.expected_hw)
        aug_input = T.AugInput(image)
        self.augmentations(aug_input)
        return image_to_tensor(aug_input.image)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for t in range(len(self)):
            yield self[t]
