"""Drawing tracked instance masks on a frame: one colour per track id, labels that never overlap each other.

One implementation for every picture that colours by track id (the demo, a results viewer): import
:func:`track_color` for the colour alone, :func:`draw_tracks` for masks + outlines + labels.

Colours: detectron2's ``colormap`` without its greys, dark colours and repeats (hard to see or to tell apart),
indexed by the track id: a track keeps its colour in every frame and in every tool, whatever other tracks exist.

Labels (``#id class score``): placed greedily, highest score first, at the first free spot of: inside the mask
(at its most interior point, when the label fits in the mask's box), then beside its box (above, below, right,
left). Where none is free the label is shrunk, then the score and the class name are dropped (``#id`` only); a
label that still collides is left out (the mask keeps its colour). No two drawn labels overlap.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from detectron2.utils.colormap import colormap

__all__ = ["track_color", "label_variants", "layout_labels", "draw_tracks"]


def _palette() -> np.ndarray:
    """detectron2's colormap, in its order, without greys, near-black colours and repeats: (P, 3) RGB in [0, 1]."""
    colors = colormap(rgb=True, maximum=1)
    keep = (np.ptp(colors, axis=1) > 0.05) & (colors.max(axis=1) >= 0.4)
    _, first = np.unique(colors.round(3), axis=0, return_index=True)
    unique = np.zeros(len(colors), bool)
    unique[first] = True
    return colors[keep & unique]


_PALETTE = _palette()
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_PAD = 2  # pixels of label background around the text

Box = Tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


def track_color(track_id) -> np.ndarray:
    """The colour of track ``track_id`` (int, numpy or 0-dim tensor): RGB in [0, 1], shape (3,)."""
    return _PALETTE[int(track_id) % len(_PALETTE)]


def label_variants(track_id: int, class_name: Optional[str], score: Optional[float]) -> List[str]:
    """Label texts from most to least detailed: ``#3 square 0.91``, ``#3 square``, ``#3``."""
    head = f"#{int(track_id)}"
    texts = [head]
    if class_name:
        texts.insert(0, f"{head} {class_name}")
    if score is not None:
        texts.insert(0, f"{texts[0]} {float(score):.2f}")
    return texts


def _font_scale(h: int, w: int) -> float:
    """Text about 1/30 of the shorter side, legible from small (96 px) to 4K frames."""
    return float(np.clip(min(h, w) / 420.0, 0.3, 1.5))


def _text_box(text: str, scale: float) -> Tuple[int, int, int]:
    """(width, height, baseline) of ``text`` with its background padding."""
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    return tw + 2 * _PAD, th + base + 2 * _PAD, base


def _mask_box(mask: np.ndarray) -> Optional[Box]:
    """(x0, y0, x1, y1) of a (H, W) bool mask; ``None`` when empty."""
    ys, xs = np.where(mask.any(axis=1))[0], np.where(mask.any(axis=0))[0]
    if len(ys) == 0:
        return None
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def _anchor(mask: np.ndarray) -> Optional[Tuple[int, int, int, int, int, int]]:
    """(cx, cy) the mask's most interior point and (x0, y0, x1, y1) its box; ``None`` for an empty mask."""
    box = _mask_box(mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    crop = np.pad(mask[y0:y1, x0:x1].astype(np.uint8), 1)
    dist = cv2.distanceTransform(crop, cv2.DIST_L2, 3)
    iy, ix = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return x0 + int(ix) - 1, y0 + int(iy) - 1, x0, y0, x1, y1


def _candidates(anchor: Tuple[int, int, int, int, int, int], bw: int, bh: int) -> List[Box]:
    """Label boxes of size (bw, bh) in order of preference: centred on the interior point when the label fits in
    the mask's box (it then hides little of a small mask), then above, below, right, left of the mask's box."""
    cx, cy, x0, y0, x1, y1 = anchor
    out: List[Box] = []
    if bw <= x1 - x0 and bh <= y1 - y0:
        out.append((cx - bw // 2, cy - bh // 2, cx - bw // 2 + bw, cy - bh // 2 + bh))
    mx, my = (x0 + x1) // 2, (y0 + y1) // 2
    return out + [
        (mx - bw // 2, y0 - bh, mx - bw // 2 + bw, y0),  # above
        (mx - bw // 2, y1, mx - bw // 2 + bw, y1 + bh),  # below
        (x1, my - bh // 2, x1 + bw, my - bh // 2 + bh),  # right
        (x0 - bw, my - bh // 2, x0, my - bh // 2 + bh),  # left
    ]


def _shift_inside(box: Box, w: int, h: int) -> Optional[Box]:
    x0, y0, x1, y1 = box
    dx = -x0 if x0 < 0 else min(0, w - x1)
    dy = -y0 if y0 < 0 else min(0, h - y1)
    x0, y0, x1, y1 = x0 + dx, y0 + dy, x1 + dx, y1 + dy
    return (x0, y0, x1, y1) if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h else None


def _free(box: Box, placed: Sequence[Box]) -> bool:
    x0, y0, x1, y1 = box
    return all(x1 <= p[0] or p[2] <= x0 or y1 <= p[1] or p[3] <= y0 for p in placed)


def layout_labels(
    masks: np.ndarray, texts: Sequence[Sequence[str]], priority: Optional[Sequence[float]] = None
) -> List[Optional[Tuple[Box, str, float]]]:
    """Non-overlapping label boxes for ``masks`` (N, H, W) bool; ``texts[i]``: label variants of instance i,
    most detailed first (:func:`label_variants`); ``priority`` (N,): placed first when higher (e.g. scores).

    Returns per instance ``(box, text, font_scale)`` or ``None`` (empty mask, or no free spot at all).
    Boxes lie inside the frame and are pairwise disjoint.
    """
    n, h, w = masks.shape
    scale = _font_scale(h, w)
    order = np.argsort(-np.asarray(priority, dtype=np.float64), kind="stable") if priority is not None else range(n)
    placed: List[Box] = []
    result: List[Optional[Tuple[Box, str, float]]] = [None] * n
    for i in order:
        anchor = _anchor(masks[i])
        if anchor is None:
            continue
        variants = list(texts[i])
        # full size, then smaller, then shorter texts at the smaller size (score, then class name dropped)
        tries = [(variants[0], scale)] + [(t, scale * 0.75) for t in variants]
        for text, s in tries:
            bw, bh, _ = _text_box(text, s)
            box = next(
                (
                    b
                    for b in map(lambda c: _shift_inside(c, w, h), _candidates(anchor, bw, bh))
                    if b and _free(b, placed)
                ),
                None,
            )
            if box is not None:
                placed.append(box)
                result[i] = (box, text, s)
                break
    return result


def draw_tracks(
    frame_bgr: np.ndarray,
    masks: np.ndarray,
    track_ids: Sequence[int],
    class_names: Optional[Sequence[Optional[str]]] = None,
    scores: Optional[Sequence[float]] = None,
    alpha: float = 0.5,
) -> np.ndarray:
    """``frame_bgr`` (H, W, 3) uint8 with ``masks`` (N, H, W) bool blended in their track colours, outlined and
    labelled (:func:`layout_labels`); smaller masks are drawn over larger ones. Returns a new (H, W, 3) uint8."""
    out = np.ascontiguousarray(frame_bgr, dtype=np.uint8).copy()
    masks = np.asarray(masks, dtype=bool)
    n = len(track_ids)
    if n == 0:
        return out
    if masks.shape != (n,) + out.shape[:2]:
        raise ValueError(f"masks of shape {masks.shape} for {n} tracks on a frame of {out.shape[:2]}")
    colors_bgr = np.stack([track_color(t)[::-1] * 255.0 for t in track_ids])  # (N, 3)
    areas = masks.reshape(n, -1).sum(axis=1)
    frame = out.copy()
    for i in np.argsort(-areas, kind="stable"):  # large first, small on top; each over the original frame
        box = _mask_box(masks[i])
        if box is None:
            continue
        x0, y0, x1, y1 = box
        m = masks[i, y0:y1, x0:x1]
        blend = (frame[y0:y1, x0:x1] * (1.0 - alpha) + colors_bgr[i] * alpha).round().astype(np.uint8)
        out[y0:y1, x0:x1] = np.where(m[:, :, None], blend, out[y0:y1, x0:x1])
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        color = tuple(float(c) for c in colors_bgr[i])
        cv2.drawContours(out, contours, -1, color, 1, cv2.LINE_AA, offset=(int(x0), int(y0)))
    names = class_names if class_names is not None else [None] * n
    texts = [label_variants(t, c, s) for t, c, s in zip(track_ids, names, scores if scores is not None else [None] * n)]
    for i, placed in enumerate(layout_labels(masks, texts, scores)):
        if placed is None:
            continue
        (x0, y0, x1, y1), text, s = placed
        color = colors_bgr[i]
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), tuple(float(c) * 0.6 for c in color), -1)
        _, _, base = _text_box(text, s)
        cv2.putText(out, text, (x0 + _PAD, y1 - _PAD - base), _FONT, s, (255, 255, 255), 1, cv2.LINE_AA)
    return out
