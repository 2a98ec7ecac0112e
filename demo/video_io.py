"""Reading frames from a video file / JPEG folder / webcam, and writing an mp4 that stays playable."""
from __future__ import annotations

import glob
import os
from typing import Iterator, Optional, Tuple

import cv2
import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


class VideoSource:
    """Frames (BGR uint8) of a video file, a folder of images (sorted by name) or a webcam index."""

    def __init__(self, path: Optional[str] = None, webcam: bool = False, max_frames: Optional[int] = None):
        self.path, self.webcam, self.max_frames = path, webcam, max_frames
        self.files = None
        self.fps = 30.0
        if webcam:
            self.cap = cv2.VideoCapture(0)
            if not self.cap.isOpened():
                raise RuntimeError("cannot open the webcam (device 0)")
            return
        if path is None:
            raise ValueError("give --video-input or --webcam")
        if os.path.isdir(path):
            self.files = sorted(f for f in glob.glob(os.path.join(path, "*")) if f.lower().endswith(IMAGE_EXTS))
            if not self.files:
                raise ValueError(f"{path}: folder has no image frames ({', '.join(IMAGE_EXTS)})")
            return
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: video file does not exist")
        self.cap = cv2.VideoCapture(path)
        ok, _ = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok:
            raise ValueError(f"{path}: cannot read any frame (unreadable, corrupt or zero-frame video)")
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 30.0

    def __len__(self) -> int:
        n = len(self.files) if self.files is not None else (0 if self.webcam else int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        return min(n, self.max_frames) if self.max_frames else n

    def __iter__(self) -> Iterator[np.ndarray]:
        count = 0
        while self.max_frames is None or count < self.max_frames:
            if self.files is not None:
                if count >= len(self.files):
                    return
                frame = cv2.imread(self.files[count], cv2.IMREAD_COLOR)
                if frame is None:
                    raise ValueError(f"{self.files[count]}: cannot decode image")
            else:
                ok, frame = self.cap.read()
                if not ok:
                    return
            count += 1
            yield frame


class Mp4Writer:
    """cv2 mp4 writer opened on the first frame; ``close()`` (also on errors) finalises a playable file."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps, self.writer, self.frames = path, fps, None, 0

    def write(self, frame_bgr: np.ndarray) -> None:
        if self.writer is None:
            h, w = frame_bgr.shape[:2]
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise RuntimeError(f"{self.path}: cannot open an mp4 writer")
        self.writer.write(frame_bgr)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


def count_frames(path: str) -> Tuple[int, Tuple[int, int]]:
    """Decode a video fully: (number of frames, (height, width))."""
    cap = cv2.VideoCapture(path)
    n, size = 0, (0, 0)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, size = n + 1, frame.shape[:2]
    cap.release()
    return n, size
