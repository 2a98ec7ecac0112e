"""Deterministic synthetic video instance segmentation dataset in the YouTube-VIS layout.

Layout written for one split ``S`` under ``OUT``::

    OUT/S/JPEGImages/vid_0001/00000.jpg ...   frames
    OUT/S.json                                YouTube-VIS style GT (uncompressed RLE, like the official train.json)
    OUT/S/videos/vid_0001.mp4                 only with ``write_mp4`` / ``--mp4``

Scenes: 1-6 textured shapes (6 classes; class = shape + texture, colours random per instance) moving with random
accelerations, changing scale and rotating, in a fixed depth order over a panning textured background; objects
enter and leave the frame, may pass behind an unannotated occluding bar (temporary full occlusion), and occlude
each other. Masks are the visible parts (object mask minus the union of nearer masks), null when < ``MIN_AREA``
pixels. Same parameters and seed -> byte-identical JSON. Scene planning (objects, motions, occluder):
:mod:`.synthetic_scenes`; shapes and textures: :mod:`.synthetic_shapes`; rendering and the splits: here.

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
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import cv2
import numpy as np

from .synthetic_scenes import Occluder, SceneObject, plan_video
from .synthetic_shapes import (
    SHAPE_TEXTURES,
    SYNTHETIC_CATEGORIES,
    background,
    draw_shape,
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


DEFAULT_NUM_FRAMES = 16
DEFAULT_HEIGHT = 160
DEFAULT_WIDTH = 256
# split -> (directory / json name, number of videos, seed)
DEFAULT_SPLITS: Dict[str, Tuple[str, int, int]] = {
    "train": ("train", 64, 2019),
    # The same generator and seed as "train", 8x the videos (its first 64 are "train"'s): more of the same task
    # for the models whose frozen-then-reused segmenter overfits 64 videos (RGNN-VIS; vis_rgnn/README.md).
    "train_large": ("train_large", 512, 2019),
    "val": ("valid", 16, 2021),
}


# ---------------------------------------------------------------------------------------------------- rendering
def _render_video(
    rng: np.random.Generator, objects: List[SceneObject], occ: Optional[Occluder], T: int, H: int, W: int
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
            objects, occ = plan_video(rng, num_frames, height, width)
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
    """Return ``(json_file, image_root)`` of split ``"train"``, ``"train_large"`` or ``"val"``, generating it under
    ``root`` first if it is missing or was made by another generator version / other parameters.

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
