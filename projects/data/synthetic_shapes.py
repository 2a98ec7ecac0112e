"""Drawing primitives of the synthetic VIS generator: class shapes, class textures, backgrounds, occluders.

Every object is described in a local frame centred on the object, rotated by ``angle`` and scaled by its radius
``r`` (all shapes fit in the circle of radius ``r``). Shapes are rasterised as binary ``uint8`` masks with
OpenCV (sub-pixel fixed-point coordinates, no anti-aliasing) so that what is painted is exactly the mask.
"""

from __future__ import annotations

import colorsys
from typing import Dict, List, Tuple

import cv2
import numpy as np

_SHIFT = 4  # fixed-point bits for cv2 sub-pixel drawing
_ONE = 1 << _SHIFT

# class name -> texture kind (one texture per class, so appearance and shape both identify the class)
SHAPE_TEXTURES: Dict[str, str] = {
    "disc": "stripes",
    "square": "checker",
    "triangle": "dots",
    "star": "solid",
    "ring": "gradient",
    "cross": "concentric",
}


def _regular_polygon(n: int, radius: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    a = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(a), np.sin(a)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    a = -np.pi / 2 + np.pi * np.arange(2 * points) / points
    rad = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([rad * np.cos(a), rad * np.sin(a)], axis=1)


def _cross(half_len: float = 0.93, half_w: float = 0.33) -> np.ndarray:
    L, w = half_len, half_w
    return np.array(
        [(-w, -L), (w, -L), (w, -w), (L, -w), (L, w), (w, w), (w, L), (-w, L), (-w, w), (-L, w), (-L, -w), (-w, -w)]
    )


# unit-radius outlines of the polygonal classes
_POLYGONS: Dict[str, np.ndarray] = {
    "square": _regular_polygon(4, phase=np.pi / 4),
    "triangle": _regular_polygon(3),
    "star": _star(),
    "cross": _cross(),
}
RING_INNER = 0.55  # inner/outer radius of the ring class


def draw_shape(mask: np.ndarray, shape: str, cx: float, cy: float, r: float, angle: float) -> None:
    """Rasterise ``shape`` into the ``uint8`` mask in place (value 1), centre (cx, cy), radius r, rotation angle."""
    if shape in ("disc", "ring"):
        c = (int(round(cx * _ONE)), int(round(cy * _ONE)))
        cv2.circle(mask, c, int(round(r * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
        if shape == "ring":
            cv2.circle(mask, c, int(round(r * RING_INNER * _ONE)), 0, -1, cv2.LINE_8, _SHIFT)
        return
    pts = _POLYGONS[shape] * r
    cos, sin = np.cos(angle), np.sin(angle)
    xy = np.stack([cx + pts[:, 0] * cos - pts[:, 1] * sin, cy + pts[:, 0] * sin + pts[:, 1] * cos], axis=1)
    cv2.fillPoly(mask, [np.round(xy * _ONE).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)


def texture(
    kind: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, r: float, angle: float, colors: np.ndarray
) -> np.ndarray:
    """Class texture sampled at pixel grids ``xs``/``ys`` (h, w) -> (h, w, 3) float RGB; moves with the object.

    ``colors`` is a (2, 3) array of the instance's two RGB colours.
    """
    dx, dy = xs - cx, ys - cy
    cos, sin = np.cos(angle), np.sin(angle)
    u = (dx * cos + dy * sin) / r
    v = (-dx * sin + dy * cos) / r
    c1, c2 = colors[0], colors[1]
    if kind == "solid":
        shade = 1.0 - 0.18 * (u + v)  # soft directional shading
        return np.clip(c1 * shade[..., None], 0, 255)
    if kind == "gradient":
        w = np.clip((u + 1) / 2, 0, 1)[..., None]
        return c1 * (1 - w) + c2 * w
    if kind == "stripes":
        sel = np.floor(u * 2.5) % 2 == 0
    elif kind == "checker":
        sel = (np.floor(u * 2.2) + np.floor(v * 2.2)) % 2 == 0
    elif kind == "dots":
        fu, fv = (u * 2.6) % 1 - 0.5, (v * 2.6) % 1 - 0.5
        sel = fu * fu + fv * fv > 0.09
    elif kind == "concentric":
        sel = np.floor(np.sqrt(u * u + v * v) * 4.0) % 2 == 0
    else:
        raise ValueError(f"unknown texture {kind!r}")
    return np.where(sel[..., None], c1, c2)


def instance_colors(rng: np.random.Generator) -> np.ndarray:
    """Two random RGB colours (float, 0..255) with clear brightness contrast, for one instance."""
    h1 = rng.random()
    h2 = (h1 + rng.uniform(0.2, 0.8)) % 1.0
    v1 = rng.uniform(0.55, 1.0)
    v2 = v1 - rng.uniform(0.35, 0.5) if v1 > 0.8 else min(1.0, v1 + rng.uniform(0.3, 0.45))
    c1 = colorsys.hsv_to_rgb(h1, rng.uniform(0.45, 1.0), v1)
    c2 = colorsys.hsv_to_rgb(h2, rng.uniform(0.3, 1.0), max(0.1, v2))
    return np.array([c1, c2], dtype=np.float32) * 255


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Random textured background (gradient + low-frequency noise + soft blobs + grain) -> (H, W, 3) float32 RGB."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    t = (xs * np.cos(a) + ys * np.sin(a)) / max(height, width)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    ca, cb = rng.uniform(30, 200, size=(2, 3)).astype(np.float32)
    img = ca * (1 - t[..., None]) + cb * t[..., None]
    gh, gw = rng.integers(3, 7), rng.integers(3, 9)
    low = rng.normal(0, 28, size=(gh, gw, 3)).astype(np.float32)
    img += cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    blobs = np.zeros_like(img)
    alpha = np.zeros((height, width), np.float32)
    scale = min(height, width)
    for _ in range(int(rng.integers(4, 12))):
        center = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        axes = (int(rng.uniform(0.05, 0.3) * scale) + 1, int(rng.uniform(0.05, 0.3) * scale) + 1)
        m = np.zeros((height, width), np.uint8)
        cv2.ellipse(m, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        sel = m.astype(bool)
        blobs[sel] = rng.uniform(20, 235, size=3)
        alpha[sel] = rng.uniform(0.3, 0.7)
    k = max(3, (scale // 12) | 1)
    blobs = cv2.GaussianBlur(blobs, (k, k), 0)
    alpha = cv2.GaussianBlur(alpha, (k, k), 0)[..., None]
    img = img * (1 - alpha) + blobs * alpha
    img += cv2.GaussianBlur(rng.normal(0, 10, size=img.shape).astype(np.float32), (3, 3), 0)
    return np.clip(img, 0, 255).astype(np.float32)


def occluder_texture(rng: np.random.Generator, height: int, width: int, vertical: bool) -> np.ndarray:
    """Grey-brown streaked texture for the unannotated occluding bar ("pole"), (H, W, 3) float32 RGB."""
    base = rng.uniform(60, 160) + rng.normal(0, 12, size=3)
    n = width if vertical else height
    streaks = cv2.GaussianBlur(rng.normal(0, 22, size=(1, n)).astype(np.float32), (1, 5), 0)[0]
    streaks = streaks[None, :, None] if vertical else streaks[:, None, None]
    img = np.broadcast_to(base, (height, width, 3)) + streaks + rng.normal(0, 6, size=(height, width, 3))
    return np.clip(img, 0, 255).astype(np.float32)


def _palette(n: int) -> List[Tuple[int, int, int]]:
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb(i / max(n, 1), 0.75, 0.95)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


# {"id" (1-based, as in the JSON), "name", "color" (RGB display colour for detectron2 ``thing_colors``)}.
# Defined here (no heavy imports) so dataset registration can read it without importing the generator.
SYNTHETIC_CATEGORIES: List[Dict] = [
    {"id": i + 1, "name": n, "color": c} for i, (n, c) in enumerate(zip(SHAPE_TEXTURES, _palette(len(SHAPE_TEXTURES))))
]
