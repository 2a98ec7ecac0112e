"""Preview picture of a YouTube-VIS style dataset: a few frames of one video, raw and with GT masks.

``python -m projects.data.synthetic_preview JSON IMAGE_ROOT OUT.png [--video-index 0] [--frames 4]``
"""

from __future__ import annotations

import argparse
import json
import os
from typing import List, Optional

import cv2
import numpy as np
import pycocotools.mask as mask_util
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import Visualizer


def _decode(rle: dict) -> np.ndarray:
    if isinstance(rle["counts"], list):
        rle = mask_util.frPyObjects(rle, *rle["size"])
    return mask_util.decode(rle).astype(bool)


def render_preview(
    json_file: str, image_root: str, out_png: str, num_frames: int = 4, video_index: int = 0, scale: float = 1.5
) -> str:
    """Draw ``num_frames`` evenly spaced frames of video ``video_index``: raw frames on top, frames with GT masks
    (one colour per track, labelled ``class #track``) below, using detectron2's ``Visualizer``. Returns ``out_png``.
    """
    with open(json_file) as f:
        data = json.load(f)
    video = data["videos"][video_index]
    names = {c["id"]: c["name"] for c in data["categories"]}
    anns = [a for a in data.get("annotations", []) if a["video_id"] == video["id"]]
    palette = colormap(rgb=True, maximum=1)
    T = len(video["file_names"])
    frames = np.unique(np.linspace(0, T - 1, min(num_frames, T)).round().astype(int))
    raw_row: List[np.ndarray] = []
    vis_row: List[np.ndarray] = []
    for t in frames:
        img = cv2.imread(os.path.join(image_root, video["file_names"][t]))[:, :, ::-1]
        h, w = img.shape[:2]
        raw_row.append(cv2.resize(img, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_NEAREST))
        vis = Visualizer(img, scale=scale)
        for k, a in enumerate(anns):
            rle = a["segmentations"][t]
            if rle is not None:  # draw_binary_mask keeps holes (overlay_instances fills them)
                label = f"{names[a['category_id']]} #{k + 1}"
                vis.draw_binary_mask(_decode(rle), color=palette[k % len(palette)], text=label, alpha=0.5)
        vis_row.append(vis.get_output().get_image())
    sep = np.full((raw_row[0].shape[0], 4, 3), 255, np.uint8)
    top = np.concatenate(sum(([r, sep] for r in raw_row), [])[:-1], axis=1)
    bottom = np.concatenate(sum(([v, sep] for v in vis_row), [])[:-1], axis=1)
    gap = np.full((4, top.shape[1], 3), 255, np.uint8)
    out_dir = os.path.dirname(os.path.abspath(out_png))
    os.makedirs(out_dir, exist_ok=True)
    cv2.imwrite(out_png, np.concatenate([top, gap, bottom], axis=0)[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out_png


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=render_preview.__doc__)
    p.add_argument("json_file")
    p.add_argument("image_root")
    p.add_argument("out_png")
    p.add_argument("--video-index", type=int, default=0)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--scale", type=float, default=1.5, help="upscaling of the frames (label legibility)")
    a = p.parse_args(argv)
    print(render_preview(a.json_file, a.image_root, a.out_png, a.frames, a.video_index, a.scale))


if __name__ == "__main__":
    main()
