"""Deterministic synthetic video instance segmentation dataset in the YouTube-VIS layout.

Layout written for one split ``S`` under ``OUT``::

    OUT/S/JPEGImages/vid_0001/00000.jpg ...   frames
    OUT/S.json                                YouTube-VIS style GT (uncompressed RLE, like the official train.json)
    OUT/S/videos/vid_0001.mp4                 only with ``write_mp4`` / ``--mp4``

Scenes: 1-6 textured shapes (6 classes; class = shape + texture, colours random per instance) moving with random
accelerations, changing scale and rotating, in a fixed depth order over a panning textured background; objects
enter and leave the frame, may pass behind an unannotated occluding bar (temporary full occlusion), and occlude
each other. Masks are the visible parts (object mask minus the union of nearer masks), null when < ``MIN_AREA``
pixels. Same parameters and seed -> byte-identical JSON.

CLI: ``python -m projects.data.synthetic --out DIR --videos N --frames T --height H --width W --seed S
[--split train] [--mp4]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import cv2
import numpy as np

from .synthetic_shapes import (
    SHAPE_TEXTURES,
    SYNTHETIC_CATEGORIES,
    background,
    draw_shape,
    instance_colors,
    occluder_texture,
    texture,
)

__all__ = [
    "SYNTHETIC_CATEGORIES",
    "DEFAULT_SPLITS",
    "generate_synthetic_vis",
    "ensure_synthetic_vis",
]

GENERATOR_VERSION = 1
MIN_AREA = 8  # visible areas below this many pixels are annotated as null

_NAMES = [c["name"] for c in SYNTHETIC_CATEGORIES]

DEFAULT_NUM_FRAMES = 16
DEFAULT_HEIGHT = 160
DEFAULT_WIDTH = 256
# split -> (directory / json name, number of videos, seed)
DEFAULT_SPLITS: Dict[str, Tuple[str, int, int]] = {
    "train": ("train", 64, 2019),
    "val": ("valid", 16, 2021),
}

_NUM_INSTANCES_P = np.array([0.1, 0.2, 0.25, 0.2, 0.15, 0.1])  # P(1..6 instances)
_KINDS = ("free", "enter", "exit", "out_and_back")
_KINDS_P = np.array([0.45, 0.2, 0.2, 0.15])
_REPEAT_CLASS_P = 0.35  # chance that an instance re-uses a class already in the video
_OCCLUDER_P = 0.4  # chance that a video has an occluding bar (one object then passes behind it)


# ----------------------------------------------------------------------------------------------- scene planning
@dataclass
class _Occluder:
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
class _Object:
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


def _pass_behind(rng: np.random.Generator, T: int, H: int, W: int, occ: _Occluder) -> Tuple[np.ndarray, np.ndarray]:
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


def _plan_video(rng: np.random.Generator, T: int, H: int, W: int) -> Tuple[List[_Object], Optional[_Occluder]]:
    S = min(H, W)
    n = int(rng.choice(6, p=_NUM_INSTANCES_P)) + 1
    occ = None
    if rng.random() < _OCCLUDER_P:
        vertical = bool(rng.random() < 0.7)
        extent = W if vertical else H
        width = max(6, int(round(rng.uniform(0.16, 0.24) * extent)))
        lo = int(round(rng.uniform(0.3, 0.7) * extent - width / 2))
        occ = _Occluder(vertical, lo, lo + width, rng.uniform(0.3, 0.7), occluder_texture(rng, H, W, vertical))
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
        objects.append(_Object(cid, instance_colors(rng), float(depth), center, radius, angle))
    return objects, occ


# ---------------------------------------------------------------------------------------------------- rendering
def _render_video(
    rng: np.random.Generator, objects: List[_Object], occ: Optional[_Occluder], T: int, H: int, W: int
) -> Iterator[Tuple[np.ndarray, List[np.ndarray]]]:
    """Yield ``(rgb uint8 frame, [visible bool mask per object])`` for each frame."""
    pad = int(np.ceil(0.06 * max(H, W)))
    bg = background(rng, H + 2 * pad, W + 2 * pad)
    start, end = rng.integers(0, 2 * pad + 1, 2), rng.integers(0, 2 * pad + 1, 2)
    noise_sigma = rng.uniform(2.0, 6.0)
    blur_sigma = rng.uniform(0.5, 0.9) if rng.random() < 0.6 else 0.0
    gains = 1 + 0.04 * np.sin(rng.uniform(0.1, 0.5) * np.arange(T) + rng.uniform(0, 2 * np.pi))
    # layers far -> near; the occluder is a layer without annotation (index -1)
    layers = sorted(range(len(objects)), key=lambda i: -objects[i].depth)
    if occ is not None:
        layers = sorted(layers + [-1], key=lambda i: -(occ.depth if i < 0 else objects[i].depth))
    occ_mask = occ.mask(H, W) if occ is not None else None

    for t in range(T):
        ox, oy = np.round(start + (end - start) * t / max(T - 1, 1)).astype(int)
        img = bg[oy : oy + H, ox : ox + W].copy()
        masks: Dict[int, np.ndarray] = {}
        for i in layers:
            if i < 0:
                img[occ_mask] = occ.image[occ_mask]
                masks[i] = occ_mask
                continue
            ob = objects[i]
            (cx, cy), r, a = ob.center[t], ob.radius[t], ob.angle[t]
            m = np.zeros((H, W), np.uint8)
            draw_shape(m, ob.shape, cx, cy, r, a)
            masks[i] = m.astype(bool)
            x0, x1 = max(int(cx - r) - 2, 0), min(int(cx + r) + 3, W)
            y0, y1 = max(int(cy - r) - 2, 0), min(int(cy + r) + 3, H)
            if x0 >= x1 or y0 >= y1:
                continue
            sub = masks[i][y0:y1, x0:x1]
            ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            tex = texture(SHAPE_TEXTURES[ob.shape], xs, ys, cx, cy, r, a, ob.colors)
            img[y0:y1, x0:x1][sub] = tex[sub]
        covered = np.zeros((H, W), bool)
        visible: Dict[int, np.ndarray] = {}
        for i in reversed(layers):  # near -> far
            visible[i] = masks[i] & ~covered
            covered |= masks[i]
        img *= gains[t]
        if blur_sigma > 0:
            img = cv2.GaussianBlur(img, (3, 3), blur_sigma)
        img += rng.standard_normal(img.shape, dtype=np.float32) * noise_sigma
        frame = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        yield frame, [visible[i] for i in range(len(objects))]


def _uncompressed_rle(mask: np.ndarray) -> Dict:
    """Bool (H, W) mask -> COCO uncompressed RLE (column-major run lengths, starting with a run of zeros)."""
    flat = mask.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _mask_bbox(mask: np.ndarray) -> List[float]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


# ----------------------------------------------------------------------------------------------------- public API
def generate_synthetic_vis(
    out_dir: Union[str, os.PathLike],
    num_videos: int,
    num_frames: int,
    height: int,
    width: int,
    seed: int,
    split_name: str = "train",
    write_mp4: bool = False,
    fps: float = 6.0,
) -> str:
    """Generate one split under ``out_dir`` (see the module doc for the layout); returns the JSON path.

    Video ``k`` depends only on ``(seed, k)`` and the frame size/length, so a larger ``num_videos`` extends a
    smaller dataset. With ``write_mp4`` every video is also written to ``<out_dir>/<split>/videos/<name>.mp4``.
    """
    if num_videos < 1 or num_frames < 1 or height < 16 or width < 16:
        raise ValueError("need num_videos >= 1, num_frames >= 1 and frames of at least 16x16 pixels")
    out = Path(out_dir)
    image_root = out / split_name / "JPEGImages"
    videos, annotations = [], []
    for k in range(num_videos):
        name = f"vid_{k + 1:04d}"
        (image_root / name).mkdir(parents=True, exist_ok=True)
        writer = None
        if write_mp4:
            (out / split_name / "videos").mkdir(parents=True, exist_ok=True)
            mp4 = str(out / split_name / "videos" / f"{name}.mp4")
            writer = cv2.VideoWriter(mp4, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not writer.isOpened():
                raise RuntimeError(f"OpenCV cannot write {mp4} (mp4v)")
        for attempt in range(100):  # re-draw the rare scene in which no object is ever visible
            rng = np.random.default_rng([seed, k, attempt])
            objects, occ = _plan_video(rng, num_frames, height, width)
            tracks: List[List[Optional[np.ndarray]]] = [[] for _ in objects]
            for t, (frame, visible) in enumerate(_render_video(rng, objects, occ, num_frames, height, width)):
                bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
                cv2.imwrite(str(image_root / name / f"{t:05d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
                if writer is not None:
                    writer.write(bgr)
                for i, m in enumerate(visible):
                    tracks[i].append(m if int(m.sum()) >= MIN_AREA else None)
            keep = [(objects[i], tr) for i, tr in enumerate(tracks) if any(m is not None for m in tr)]
            if keep:
                break
            if writer is not None:  # start the file again
                writer.release()
                writer = cv2.VideoWriter(mp4, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if writer is not None:
            writer.release()
        vid = k + 1
        videos.append(
            {
                "id": vid,
                "width": width,
                "height": height,
                "length": num_frames,
                "file_names": [f"{name}/{t:05d}.jpg" for t in range(num_frames)],
            }
        )
        for ob, tr in keep:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "video_id": vid,
                    "category_id": ob.category_id,
                    "iscrowd": 0,
                    "segmentations": [None if m is None else _uncompressed_rle(m) for m in tr],
                    "areas": [None if m is None else float(m.sum()) for m in tr],
                    "bboxes": [None if m is None else _mask_bbox(m) for m in tr],
                    "width": width,
                    "height": height,
                    "length": num_frames,
                }
            )
    params = dict(num_videos=num_videos, num_frames=num_frames, height=height, width=width, seed=seed)
    data = {
        "info": {
            "description": "Synthetic video instance segmentation (projects.data.synthetic)",
            "version": str(GENERATOR_VERSION),
            "params": params,
        },
        "licenses": [],
        "videos": videos,
        "categories": [{"id": c["id"], "name": c["name"], "supercategory": "shape"} for c in SYNTHETIC_CATEGORIES],
        "annotations": annotations,
    }
    json_path = out / f"{split_name}.json"
    with open(json_path, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    return str(json_path)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock held for the ``with`` block (flock on POSIX, msvcrt on Windows)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # Windows
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    time.sleep(0.5)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def ensure_synthetic_vis(
    root: Union[str, os.PathLike],
    split: str,
    num_videos: Optional[int] = None,
    num_frames: int = DEFAULT_NUM_FRAMES,
    height: int = DEFAULT_HEIGHT,
    width: int = DEFAULT_WIDTH,
    seed: Optional[int] = None,
) -> Tuple[str, str]:
    """Return ``(json_file, image_root)`` of split ``"train"`` or ``"val"``, generating it under ``root`` first if
    it is missing or was made by another generator version / other parameters.

    Safe with concurrent processes: generation happens under a lock file, into a temporary directory that is
    moved into place; a stamp file written last marks a complete split.
    """
    if split == "valid":
        split = "val"
    if split not in DEFAULT_SPLITS:
        raise KeyError(f"unknown synthetic split {split!r}; expected one of {sorted(DEFAULT_SPLITS)}")
    dirname, default_videos, default_seed = DEFAULT_SPLITS[split]
    params = dict(
        num_videos=default_videos if num_videos is None else num_videos,
        num_frames=num_frames,
        height=height,
        width=width,
        seed=default_seed if seed is None else seed,
    )
    stamp_value = json.dumps({"version": GENERATOR_VERSION, **params}, sort_keys=True)
    root = Path(root)
    json_file, image_root = root / f"{dirname}.json", root / dirname / "JPEGImages"
    stamp = root / f".{dirname}.stamp"

    def current() -> bool:
        return stamp.is_file() and stamp.read_text() == stamp_value and json_file.is_file() and image_root.is_dir()

    if current():
        return str(json_file), str(image_root)
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / f".{dirname}.lock"):
        if not current():  # another process may have finished it while we waited
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dirname}-", dir=root))
            try:
                generate_synthetic_vis(tmp, split_name=dirname, **params)
                stamp.unlink(missing_ok=True)
                if (root / dirname).exists():
                    shutil.rmtree(root / dirname)
                os.replace(tmp / dirname, root / dirname)
                os.replace(tmp / f"{dirname}.json", json_file)
                (tmp / "stamp").write_text(stamp_value)
                os.replace(tmp / "stamp", stamp)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return str(json_file), str(image_root)


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description="Generate a synthetic YouTube-VIS style dataset split.")
    p.add_argument("--out", required=True, help="output root directory")
    p.add_argument("--videos", type=int, default=DEFAULT_SPLITS["train"][1])
    p.add_argument("--frames", type=int, default=DEFAULT_NUM_FRAMES)
    p.add_argument("--height", type=int, default=DEFAULT_HEIGHT)
    p.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="train", help="split name: directory and JSON file name")
    p.add_argument("--mp4", action="store_true", help="also write <out>/<split>/videos/<name>.mp4")
    a = p.parse_args(argv)
    start = time.perf_counter()
    json_path = generate_synthetic_vis(
        a.out, a.videos, a.frames, a.height, a.width, a.seed, split_name=a.split, write_mp4=a.mp4
    )
    took = time.perf_counter() - start
    print(f"wrote {a.videos} videos x {a.frames} frames in {took:.1f} s")
    print(f"annotations: {json_path}")
    print(f"images:      {Path(a.out) / a.split / 'JPEGImages'}")
    if a.mp4:
        print(f"videos:      {Path(a.out) / a.split / 'videos'}")


if __name__ == "__main__":
    main()
