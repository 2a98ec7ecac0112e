"""Drawing of tracks on frames, panels side by side and contact sheets (RGB uint8 arrays throughout).

Masks are drawn by the demo's own drawing (:mod:`projects.utils.track_drawing`), so a track looks the same in
``demo/demo.py``'s video and here.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import cv2
import numpy as np

from projects.utils.track_drawing import draw_tracks as draw_tracks_bgr
from projects.utils.track_drawing import track_color

__all__ = ["track_color", "draw_tracks", "with_header", "side_by_side", "contact_sheet"]

_WHITE = 255


def draw_tracks(
    image_rgb: np.ndarray,
    masks: Sequence[np.ndarray],
    track_ids: Sequence[int],
    class_names: Sequence[Optional[str]],
    scores: Sequence[Optional[float]],
    scale: float = 1.0,
) -> np.ndarray:
    """(H, W) bool ``masks`` on an (H, W, 3) RGB uint8 image, drawn exactly as the demo draws them
    (:func:`projects.utils.track_drawing.draw_tracks`: track colours, outlines, non-overlapping ``#id class
    score`` labels) after resizing by ``scale``. Returns the (H*scale, W*scale, 3) RGB uint8 image."""
    h, w = image_rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
    if scale != 1.0:
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
        masks = [cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool) for m in masks]
    stacked = np.stack(masks) if len(masks) else np.zeros((0,) + bgr.shape[:2], bool)
    has_score = any(s is not None for s in scores)
    out = draw_tracks_bgr(bgr, stacked, list(track_ids), list(class_names), list(scores) if has_score else None)
    return np.ascontiguousarray(out[:, :, ::-1])


def with_header(image_rgb: np.ndarray, text: str, height: int = 16) -> np.ndarray:
    """``image_rgb`` under a dark strip of ``height`` pixels holding ``text`` (clipped to the width)."""
    strip = np.full((height, image_rgb.shape[1], 3), 32, np.uint8)
    cv2.putText(strip, text, (3, height - 4), cv2.FONT_HERSHEY_SIMPLEX, height / 40, (240, 240, 240), 1, cv2.LINE_AA)
    return np.concatenate([strip, image_rgb], axis=0)


def side_by_side(panels: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Panels of one height next to each other with ``gap`` white columns between them."""
    sep = np.full((panels[0].shape[0], gap, 3), _WHITE, np.uint8)
    out: List[np.ndarray] = []
    for p in panels:
        out += [p, sep]
    return np.concatenate(out[:-1], axis=1)


def contact_sheet(cells: Sequence[np.ndarray], cols: int, gap: int = 4) -> np.ndarray:
    """Cells of one size in a grid of ``cols`` columns (row-major), ``gap`` white pixels apart; the last row is
    padded with white."""
    h, w = cells[0].shape[:2]
    cols = max(1, min(cols, len(cells)))
    rows = -(-len(cells) // cols)
    sheet = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), _WHITE, np.uint8)
    for k, cell in enumerate(cells):
        r, c = divmod(k, cols)
        sheet[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = cell
    return sheet
