"""Scene planning of the synthetic VIS dataset (:mod:`.synthetic`): how many objects, their classes, sizes,
motions (free, entering, exiting, out and back), scale tracks, and the optional occluding bar one object passes
behind. Pure functions of a ``numpy.random.Generator``: the same draws in the same order give the same scenes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from .synthetic_shapes import SYNTHETIC_CATEGORIES, instance_colors, occluder_texture

__all__ = ["Occluder", "SceneObject", "plan_video"]

_NAMES = [c["name"] for c in SYNTHETIC_CATEGORIES]

_NUM_INSTANCES_P = np.array([0.1, 0.2, 0.25, 0.2, 0.15, 0.1])  # P(1..6 instances)
_KINDS = ("free", "enter", "exit", "out_and_back")
_KINDS_P = np.array([0.45, 0.2, 0.2, 0.15])
_REPEAT_CLASS_P = 0.35  # chance that an instance re-uses a class already in the video
_OCCLUDER_P = 0.4  # chance that a video has an occluding bar (one object then passes behind it)


# ----------------------------------------------------------------------------------------------- scene planning
@dataclass
class Occluder:
    vertical: bool
    lo: int  # first covered column (vertical) / row (horizontal)
    hi: int  # one past the last
    depth: float
    image: np.ndarray  # (H, W, 3) float texture

    def mask(self, height: int, width: int) -> np.ndarray:
        m = np.zeros((height, width), bool)
        if self.vertical:
            m[:, self.lo : self.hi] = True
        else:
            m[self.lo : self.hi] = True
        return m


@dataclass
class SceneObject:
    category_id: int  # 1-based
    colors: np.ndarray  # (2, 3)
    depth: float  # larger = farther
    center: np.ndarray  # (T, 2) x, y
    radius: np.ndarray  # (T,)
    angle: np.ndarray  # (T,)

    @property
    def shape(self) -> str:
        return _NAMES[self.category_id - 1]


def _scale_track(rng: np.random.Generator, T: int, S: float) -> np.ndarray:
    r0 = rng.uniform(0.08, 0.19) * S
    t = np.arange(T)
    log_s = rng.uniform(-0.4, 0.4) * t / max(T - 1, 1) + rng.uniform(0, 0.12) * np.sin(
        rng.uniform(0.2, 0.6) * t + rng.uniform(0, 2 * np.pi)
    )
    return np.clip(r0 * np.exp(log_s), 0.05 * S, 0.28 * S)


def _motion(rng: np.random.Generator, kind: str, T: int, H: int, W: int, radius: np.ndarray) -> np.ndarray:
    """Centre track (T, 2) by simulating velocity with random accelerations and kicks, per motion ``kind``.

    ``free`` bounces off an inner margin (the object may be cropped by the border), ``enter`` starts outside a
    border and comes in, ``exit`` leaves through the nearest border, ``out_and_back`` leaves and returns.
    """
    size = np.array([W, H], np.float64)
    S = min(H, W)
    s = rng.uniform(0.012, 0.035) * (H + W) / 2  # typical speed, px / frame
    margin = 0.1 * S
    lo, hi = np.full(2, margin), size - 1 - margin

    def unit() -> np.ndarray:
        a = rng.uniform(0, 2 * np.pi)
        return np.array([np.cos(a), np.sin(a)])

    axis, sign = 0, 1
    if kind == "enter":
        axis, sign = int(rng.integers(2)), int(rng.choice([-1, 1]))
        k0 = int(rng.integers(1, max(1, T // 3) + 1))  # first (partly) visible frame
        vn = s * rng.uniform(0.8, 1.5)
        p = rng.uniform(0.15, 0.85, 2) * size
        offset = radius[0] + vn * (k0 - 0.5)
        p[axis] = -offset if sign > 0 else size[axis] - 1 + offset
        v = rng.normal(0, 0.3 * s, 2)
        v[axis] = sign * vn
        phase = "entering"
    else:
        p = rng.uniform(lo, hi)
        v = s * rng.uniform(0.5, 1.5) * unit()
        phase = "free"
    if kind == "exit":
        t_exit = int(rng.integers(max(1, T // 4), T // 2 + 1))
    elif kind == "out_and_back":
        t_exit = int(rng.integers(max(1, T // 6), max(1, T // 3) + 1))
    else:
        t_exit = T
    k_out, outside = int(rng.integers(1, 3)), 0

    pos = np.empty((T, 2))
    for t in range(T):
        pos[t] = p
        r = radius[t]
        if phase == "free" and t + 1 >= t_exit:  # head for the nearest border
            d = np.concatenate([p, size - 1 - p])
            j = int(np.argmin(d))
            axis, sign = j % 2, (-1 if j < 2 else 1)
            budget = max(1, T - 1 - t - (k_out + 2 if kind == "out_and_back" else 0))
            need = (d[j] + radius.max() + 1) / budget
            v[axis] = sign * min(max(s * rng.uniform(1.0, 1.5), need), 0.15 * S)
            phase = "leaving"
        elif phase == "free":
            v = v + rng.normal(0, 0.25 * s, 2)
            if rng.random() < 0.12:  # sudden change of direction and speed
                v = s * rng.uniform(0.5, 1.5) * unit()
            speed = np.linalg.norm(v)
            v = v * np.clip(speed, 0.3 * s, 2 * s) / max(speed, 1e-6)
            v = np.where((p < lo) & (v < 0) | (p > hi) & (v > 0), -v, v)
        else:  # entering / leaving: keep the normal velocity, wander along the border
            o = 1 - axis
            v[o] += rng.normal(0, 0.15 * s)
            if (p[o] < lo[o] and v[o] < 0) or (p[o] > hi[o] and v[o] > 0):
                v[o] = -v[o]
            if phase == "entering" and lo[axis] <= p[axis] <= hi[axis]:
                phase = "free"
            elif phase == "leaving" and kind == "out_and_back":
                if p[axis] < -r - 1 or p[axis] > size[axis] + r:
                    outside += 1
                    if outside >= k_out:
                        v[axis] = -v[axis]
                        phase, t_exit = "entering", T
        p = p + v
    return pos


def _pass_behind(rng: np.random.Generator, T: int, H: int, W: int, occ: Occluder) -> Tuple[np.ndarray, np.ndarray]:
    """Centre and radius tracks of an object that crosses behind the bar and is fully hidden for >= 1 frame."""
    size = np.array([W, H], np.float64)
    axis = 0 if occ.vertical else 1  # the object moves across the bar along this axis
    width = occ.hi - occ.lo
    centre = (occ.lo + occ.hi - 1) / 2
    t = np.arange(T)
    radius = rng.uniform(0.2, 0.32) * width * (1 + 0.04 * np.sin(rng.uniform(0.2, 0.6) * t))
    half = width / 2 - radius.max() - 1  # |centre offset| <= half  =>  fully behind the bar
    hidden = max(1, int(round(rng.uniform(0.15, 0.3) * T)))
    speed = max(2 * half / hidden, 0.3)
    t_cross = int(rng.integers(T // 3, T - T // 3)) if T >= 3 else 0
    pos = np.empty((T, 2))
    pos[:, axis] = centre + rng.choice([-1, 1]) * speed * (t - t_cross)
    o = 1 - axis
    margin = 0.1 * min(H, W)
    q, vq = rng.uniform(margin, size[o] - 1 - margin), rng.normal(0, 0.01 * size[o])
    for i in range(T):
        pos[i, o] = q
        vq += rng.normal(0, 0.005 * size[o])
        if (q < margin and vq < 0) or (q > size[o] - 1 - margin and vq > 0):
            vq = -vq
        q += vq
    return pos, radius


def plan_video(rng: np.random.Generator, T: int, H: int, W: int) -> Tuple[List[SceneObject], Optional[Occluder]]:
    S = min(H, W)
    n = int(rng.choice(6, p=_NUM_INSTANCES_P)) + 1
    occ = None
    if rng.random() < _OCCLUDER_P:
        vertical = bool(rng.random() < 0.7)
        extent = W if vertical else H
        width = max(6, int(round(rng.uniform(0.16, 0.24) * extent)))
        lo = int(round(rng.uniform(0.3, 0.7) * extent - width / 2))
        occ = Occluder(vertical, lo, lo + width, rng.uniform(0.3, 0.7), occluder_texture(rng, H, W, vertical))
    kinds = list(rng.choice(_KINDS, size=n, p=_KINDS_P))
    if occ is not None:
        kinds[int(rng.integers(n))] = "pass_behind"
    used: List[int] = []
    objects = []
    for kind in kinds:
        if used and rng.random() < _REPEAT_CLASS_P:
            cid = int(rng.choice(used))
        else:
            cid = int(rng.integers(len(_NAMES))) + 1
        used.append(cid)
        if kind == "pass_behind":
            center, radius = _pass_behind(rng, T, H, W, occ)
            depth = rng.uniform(occ.depth + 0.01, 1.0)
        else:
            radius = _scale_track(rng, T, S)
            center = _motion(rng, kind, T, H, W, radius)
            depth = rng.uniform(0, 1)
        spin = rng.uniform(-0.12, 0.12) + rng.normal(0, 0.02, T)
        angle = rng.uniform(0, 2 * np.pi) + np.cumsum(spin) - spin[0]
        objects.append(SceneObject(cid, instance_colors(rng), float(depth), center, radius, angle))
    return objects, occ
