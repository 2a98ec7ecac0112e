"""Preview picture of a YouTube-VIS style dataset: a few frames of one video, raw and with GT masks.

``python -m projects.data.synthetic_preview JSON IMAGE_ROOT OUT.png [--video-index 0] [--frames 4]``

The GT is read, checked and drawn by the results viewer (:mod:`projects.visualize`): polygons, compressed and
uncompressed RLE, tracks coloured by track id as in the demo.
"""

from __future__ import annotations

import argparse
import os
from typing import List, Optional

import cv2

from projects.data.frames import read_frame
from projects.visualize import contact_sheet, draw_panel, ground_truth_tracks, load_dataset, sheet_indices


def render_preview(
    json_file: str, image_root: str, out_png: str, num_frames: int = 4, video_index: int = 0, scale: float = 1.5
) -> str:
    """Draw ``num_frames`` evenly spaced frames of video ``video_index``: raw frames on top, frames with GT masks
    (labelled ``#track class``) below. Returns ``out_png``."""
    data, videos = load_dataset(json_file, image_root)
    if not 0 <= video_index < len(videos):
        raise IndexError(f"{json_file}: --video-index {video_index} outside its {len(videos)} videos")
    video = list(videos.values())[video_index]
    gt = ground_truth_tracks(data, json_file, [video.video_id]).get(video.video_id, [])
    raw_row, vis_row = [], []
    for t in sheet_indices(len(video.frames), num_frames):
        image = read_frame(video.frames[t], "RGB", expected_hw=(video.height, video.width))
        vis_row.append(draw_panel(image, gt, t, scale))
        raw_row.append(cv2.resize(image, vis_row[-1].shape[1::-1], interpolation=cv2.INTER_NEAREST))
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    sheet = contact_sheet(raw_row + vis_row, cols=len(raw_row))
    cv2.imwrite(out_png, sheet[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
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
