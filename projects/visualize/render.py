"""Render one :class:`~projects.visualize.inputs.VideoView` to H.264 mp4 / GIF / a contact-sheet PNG.

Each output frame is the video frame with the predicted tracks whose video-level score is at least the
threshold (drawn by increasing score, so the best track is on top), optionally next to the same frame with the
ground-truth tracks; a strip above each panel names the video, the frame and the panel.
"""

from __future__ import annotations

import os
from typing import Iterator, List, Optional, Sequence

import cv2
import numpy as np

from projects.data.frames import read_frame
from projects.utils.masks import decode_mask
from projects.utils.video_io import VideoWriter

from .draw import contact_sheet, draw_tracks, side_by_side, with_header
from .inputs import Track, VideoView

__all__ = ["FORMATS", "visible_predictions", "draw_panel", "render_frames", "sheet_indices", "render_video"]

FORMATS = ("mp4", "gif", "png")


def visible_predictions(video: VideoView, score_thresh: float) -> List[Track]:
    """Predicted tracks at or above ``score_thresh``, by increasing score."""
    return sorted((p for p in video.predictions if p.score >= score_thresh), key=lambda p: p.score)


def draw_panel(image_rgb: np.ndarray, tracks: Sequence[Track], t: int, scale: float = 1.0) -> np.ndarray:
    """Frame ``t`` of ``tracks`` drawn on ``image_rgb`` (a track without a mask in frame ``t`` is skipped)."""
    h, w = image_rgb.shape[:2]
    present = [tr for tr in tracks if t < len(tr.segmentations) and tr.segmentations[t] is not None]
    masks = [decode_mask(tr.segmentations[t], h, w) for tr in present]
    ids, names, scores = [tr.track_id for tr in present], [tr.category for tr in present], [tr.score for tr in present]
    return draw_tracks(image_rgb, masks, ids, names, scores, scale)


def render_frames(
    video: VideoView, score_thresh: float, show_gt: bool = False, scale: float = 1.0
) -> Iterator[np.ndarray]:
    """The composed RGB frames of ``video``, one per frame file. A missing, corrupt or wrong-sized frame file is
    a ``DatasetFormatError`` naming it."""
    preds = visible_predictions(video, score_thresh)
    header = max(12, int(round(16 * scale)))
    n = len(video.frames)
    for t, path in enumerate(video.frames):
        image = read_frame(path, "RGB", expected_hw=(video.height, video.width))
        title = f"{video.name} {t + 1}/{n}: {len(preds)} tracks >= {score_thresh:g}"
        panel = with_header(draw_panel(image, preds, t, scale), title, header)
        if show_gt:
            gt = with_header(draw_panel(image, video.ground_truth, t, scale), "ground truth", header)
            panel = side_by_side([panel, gt])
        yield panel


def sheet_indices(num_frames: int, count: int) -> List[int]:
    """``count`` frame indices spread evenly over the video (first and last included)."""
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, min(count, num_frames))})


def render_video(
    video: VideoView,
    out_dir: str,
    formats: Sequence[str] = ("mp4", "png"),
    score_thresh: float = 0.3,
    show_gt: bool = False,
    fps: float = 6.0,
    scale: float = 1.0,
    sheet_frames: int = 8,
    sheet_cols: Optional[int] = None,
) -> List[str]:
    """Write ``OUT_DIR/<video name>.{mp4,gif,png}`` (``formats``); return the paths written.

    The PNG is a contact sheet of ``sheet_frames`` evenly spaced frames in ``sheet_cols`` columns (default 4,
    2 with ground truth).
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown output format(s) {unknown}; choose from {list(FORMATS)}")
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, video.name)
    writers = [VideoWriter(f"{base}.{ext}", fps) for ext in ("mp4", "gif") if ext in formats]
    wanted = set(sheet_indices(len(video.frames), sheet_frames)) if "png" in formats else set()
    cells: List[np.ndarray] = []
    try:
        for t, frame in enumerate(render_frames(video, score_thresh, show_gt, scale)):
            bgr = np.ascontiguousarray(frame[:, :, ::-1])
            for w in writers:
                w.write(bgr)
            if t in wanted:
                cells.append(bgr)
    finally:
        for w in writers:
            w.close()
    paths = [w.path for w in writers]
    if cells:
        cols = sheet_cols or (2 if show_gt else 4)
        png = f"{base}.png"
        cv2.imwrite(png, contact_sheet(cells, cols), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        paths.append(png)
    return paths
