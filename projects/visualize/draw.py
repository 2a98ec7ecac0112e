"""Drawing of tracks on frames, panels side by side and contact sheets (RGB uint8 arrays throughout).

Masks are drawn with detectron2's ``Visualizer.draw_binary_mask`` (alpha 0.5, label inside the mask, holes kept)
in the demo's colour of their track id, so a track looks the same in ``demo/demo.py``'s video and here.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import cv2
import numpy as np
from detectron2.utils.visualizer import Visualizer

__all__ = ["track_color", "draw_tracks", "with_header", "side_by_side", "contact_sheet"]

MASK_ALPHA = 0.5
_WHITE = 255


def track_color(track_id: int) -> np.ndarray:
    """The demo's colour of ``track_id`` (RGB in [0, 1]): one colour rule for the demo and the viewer."""
    try:
        from demo.demo import track_color as demo_track_color
    except ImportError as e:  # demo/ is not part of the installed packages
        raise ImportError(
            f"the results viewer draws with the colours of demo/demo.py, which cannot be imported ({e}): run it "
            "from the repository root"
        ) from None
    return demo_track_color(track_id)


def draw_tracks(
    image_rgb: np.ndarray,
    masks: Sequence[np.ndarray],
    track_ids: Sequence[int],
    labels: Sequence[Optional[str]],
    scale: float = 1.0,
) -> np.ndarray:
    """Draw (H, W) bool ``masks`` on an (H, W, 3) RGB uint8 image, each in ``track_color`` of its track id with
    its label; later masks are drawn over earlier ones. Returns the (H*scale, W*scale, 3) RGB uint8 image."""
    vis = Visualizer(image_rgb, scale=scale)
    for mask, tid, label in zip(masks, track_ids, labels):
        if mask.any():
            vis.draw_binary_mask(mask, color=track_color(tid), text=label, alpha=MASK_ALPHA)
    return vis.get_output().get_image()


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
