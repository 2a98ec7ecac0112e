"""Binary mask <-> COCO run-length encoding, as YouTube-VIS results expect (compressed RLE, counts as str)."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import pycocotools.mask as mask_util
import torch

RLE = dict  # {"size": [H, W], "counts": str}


def encode_mask(mask: Union[np.ndarray, torch.Tensor]) -> Optional[RLE]:
    """(H, W) bool/0-1 mask -> compressed RLE with ``counts`` as str; ``None`` when the mask is empty.

    ``None`` is the YouTube-VIS convention for "the track has no mask in this frame".
    """
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode_mask expects an (H, W) mask, got shape {mask.shape}")
    if not mask.any():
        return None
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def decode_mask(rle: Union[None, RLE, list], height: int, width: int) -> np.ndarray:
    """Compressed/uncompressed RLE, COCO polygons or ``None`` -> (H, W) bool mask."""
    if rle is None:
        return np.zeros((height, width), dtype=bool)
    if isinstance(rle, list):  # polygons
        return mask_util.decode(mask_util.merge(mask_util.frPyObjects(rle, height, width))).astype(bool)
    if isinstance(rle.get("counts"), list):
        rle = mask_util.frPyObjects(rle, *rle["size"])
    elif isinstance(rle.get("counts"), str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_util.decode(rle).astype(bool)
