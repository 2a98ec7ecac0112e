"""Reading real-world videos / frame folders / webcams, and writing H.264 mp4 or GIF output that stays playable.

What the reader reports (``on_warning``; with ``strict=True`` each of these raises :class:`VideoReadError`):

- a video whose data ends before its header's frame count (truncated download/copy): "decoded 68 of 444 frames";
- a frame file in a folder that cannot be decoded (corrupt/truncated JPEG or PNG): skipped, its index recorded;
- a missing or implausible frame rate in the header (output then uses 30 fps).

Always errors (one line naming the file): a path that does not exist, a video with no decodable frame, a folder
without image files, a frame file whose size differs from the folder's first frame. Grayscale, palette, RGBA and
16-bit frames are converted to 8-bit BGR.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
from io import BytesIO
from typing import Callable, Iterator, List, Optional, Tuple

import cv2
import numpy as np
from PIL import Image, ImageOps

__all__ = ["VideoReadError", "VideoSource", "VideoWriter", "read_image_file", "count_frames", "IMAGE_EXTS"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_OUTPUT_EXTS = (".mp4", ".mov", ".mkv", ".gif")
DEFAULT_FPS = 30.0
logger = logging.getLogger(__name__)


class VideoReadError(ValueError):
    """A video/frame that cannot be read (or, in strict mode, is incomplete); the message names the file."""


def _natural_key(path: str) -> list:
    """ "frame_2.jpg" before "frame_10.jpg" (numbers compared as numbers)."""
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", os.path.basename(path))]


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Integer images of more than 8 bits -> uint8 by full-range scaling (65535 -> 255)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype in (np.uint16, np.int32, np.uint32) or array.dtype == np.dtype(">u2"):
        return np.round(np.clip(array.astype(np.float32), 0, 65535) * (255.0 / 65535.0)).astype(np.uint8)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    raise ValueError(f"unsupported pixel type {array.dtype}")


def read_image_file(path: str) -> np.ndarray:
    """Decode one frame file -> (H, W, 3) BGR uint8, EXIF orientation applied; :class:`VideoReadError` if corrupt.

    Truncation is detected (PIL refuses incomplete data; a JPEG must hold an end-of-image marker after its
    scan), unlike OpenCV's decoder which silently fills the missing part with grey.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise VideoReadError(f"{path}: cannot read the file ({e.strerror})") from None
    if path.lower().endswith((".jpg", ".jpeg")):
        sos = data.find(b"\xff\xda")
        if not data.startswith(b"\xff\xd8") or sos < 0 or data.rfind(b"\xff\xd9") < sos:
            raise VideoReadError(f"{path}: corrupt JPEG (no start/scan/end-of-image marker: truncated or damaged)")
    try:
        with Image.open(BytesIO(data)) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                array = _to_uint8(np.asarray(image))
            elif image.mode in ("L", "RGB"):
                array = np.asarray(image)
            else:  # P, LA, RGBA, CMYK, 1, ...: let PIL flatten to RGB
                array = np.asarray(image.convert("RGB"))
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... for corrupt files
        raise VideoReadError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2))
    return np.ascontiguousarray(array[:, :, ::-1])


class VideoSource:
    """Frames (BGR uint8) of a video file, a folder of images (natural name order) or webcam 0.

    Iterating yields frames; :meth:`indexed` yields ``(source_index, frame)`` so that skipped frames keep the
    other frames' indices. After iteration: ``decoded`` (frames yielded), ``expected`` (the header's / folder's
    frame count, 0 when unknown), ``skipped`` (``[(index, message)]``).
    """

    def __init__(
        self,
        path: Optional[str] = None,
        webcam: bool = False,
        max_frames: Optional[int] = None,
        strict: bool = False,
        on_warning: Optional[Callable[[str], None]] = None,
    ):
        if max_frames is not None and (isinstance(max_frames, bool) or int(max_frames) != max_frames or max_frames < 1):
            raise ValueError(f"max_frames must be a whole number >= 1 or None, got {max_frames!r}")
        self.path, self.webcam, self.max_frames, self.strict = path, webcam, max_frames, strict
        self.on_warning = on_warning or logger.warning
        self.files: Optional[List[str]] = None
        self.cap = None
        self.fps = DEFAULT_FPS
        self.expected = 0
        self.decoded = 0
        self.skipped: List[Tuple[int, str]] = []
        if webcam:
            self.cap = cv2.VideoCapture(0)
            if not self.cap.isOpened():
                raise VideoReadError("webcam 0: cannot open the camera")
            return
        if path is None:
            raise VideoReadError("no input: give --video-input PATH or --webcam")
        if os.path.isdir(path):
            self.files = sorted(
                (os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTS)), key=_natural_key
            )
            if not self.files:
                raise VideoReadError(f"{path}: folder has no image frames ({', '.join(IMAGE_EXTS)})")
            self.expected = len(self.files)
            return
        if not os.path.isfile(path):
            raise VideoReadError(f"{path}: video file does not exist")
        self.cap = cv2.VideoCapture(path)
        ok = self.cap.isOpened() and self.cap.grab()
        if not ok:
            raise VideoReadError(f"{path}: cannot read any frame (unreadable, corrupt or zero-frame video)")
        self.cap.release()
        self.cap = cv2.VideoCapture(path)  # reopen: seeking back is unreliable on damaged files
        self.expected = max(int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        if not (math.isfinite(fps) and 1.0 <= fps <= 240.0):
            self._problem(
                f"{path}: the header's frame rate ({fps}) is missing or implausible; output uses {DEFAULT_FPS:g} fps"
            )
        else:
            self.fps = float(fps)

    def _problem(self, message: str) -> None:
        if self.strict:
            raise VideoReadError(message + " (--strict)")
        self.on_warning(message)

    def __len__(self) -> int:
        """Frames to expect (header / folder count, capped by ``max_frames``); 0 when unknown (webcam)."""
        return min(self.expected, self.max_frames) if self.max_frames else self.expected

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, frame in self.indexed():
            yield frame

    def indexed(self) -> Iterator[Tuple[int, np.ndarray]]:
        self.decoded, self.skipped = 0, []
        limit = self.max_frames
        size: Optional[Tuple[int, int]] = None
        if self.files is not None:
            for index, file in enumerate(self.files[:limit] if limit else self.files):
                try:
                    frame = read_image_file(file)
                except VideoReadError as e:
                    self._problem(f"{e}; frame {index} skipped")
                    self.skipped.append((index, str(e)))
                    continue
                size = self._check_size(frame, size, file)
                self.decoded += 1
                yield index, frame
            return
        index = 0
        while limit is None or index < limit:
            ok, frame = self.cap.read()
            if not ok:
                break
            self.decoded += 1
            yield index, frame
            index += 1
        wanted = min(self.expected, limit) if limit else self.expected
        if not self.webcam and self.decoded < wanted:
            self._problem(
                f"{self.path}: decoded {self.decoded} of {self.expected} frames (the data ends early: truncated or "
                "damaged file); outputs cover the decoded frames"
            )

    @staticmethod
    def _check_size(frame: np.ndarray, size: Optional[Tuple[int, int]], name: str) -> Tuple[int, int]:
        """All frames of a video have the first frame's size; another size is an error naming the file."""
        h, w = frame.shape[:2]
        if size is not None and (h, w) != size:
            raise VideoReadError(
                f"{name}: frame of {w}x{h} after frames of {size[1]}x{size[0]} "
                "(all frames of a video must have one size: resize or move the odd frames)"
            )
        return (h, w)

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()


def _ffmpeg_exe() -> Optional[str]:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


class VideoWriter:
    """Writes BGR frames to ``.mp4``/``.mov``/``.mkv`` (H.264, yuv420p: plays in browsers) or ``.gif``.

    Frames are piped to an ``ffmpeg`` process (the ``imageio-ffmpeg`` wheel's binary) started on the first frame in
    its own session: Ctrl-C in the terminal reaches only Python, whose ``close()`` finalises the file, and if
    Python is killed ffmpeg sees the pipe close and still finalises it, so an interrupted run leaves a playable
    file holding the frames written. H.264 4:2:0 needs even sizes: an odd width/height is padded by one
    replicated pixel column/row. GIFs use a palette computed from the whole clip (keep them short).
    """

    def __init__(self, path: str, fps: float):
        ext = os.path.splitext(path)[1].lower()
        if ext not in VIDEO_OUTPUT_EXTS:
            raise ValueError(f"{path}: output must end with one of {', '.join(VIDEO_OUTPUT_EXTS)}")
        self.ffmpeg = _ffmpeg_exe()
        if self.ffmpeg is None:
            raise RuntimeError(f"{path}: writing video needs ffmpeg: pip install imageio-ffmpeg")
        self.path, self.fps, self.is_gif = path, float(fps), ext == ".gif"
        self.proc: Optional[subprocess.Popen] = None
        self.size: Optional[Tuple[int, int]] = None  # (H, W) of the frames given
        self.frames = 0

    def _open(self, h: int, w: int) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.size = (h, w)
        ph, pw = (h, w) if self.is_gif else (h + h % 2, w + w % 2)
        cmd = [
            self.ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgr24",
            "-s",
            f"{pw}x{ph}",
            "-r",
            f"{self.fps:.6g}",
            "-i",
            "-",
            "-an",
        ]
        if self.is_gif:
            cmd += ["-filter_complex", "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse", "-loop", "0"]
        else:
            cmd += [
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "20",
                "-pix_fmt",
                "yuv420p",
                "-movflags",
                "+faststart",
            ]
        self.proc = subprocess.Popen(
            cmd + [self.path], stdin=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )

    def write(self, frame_bgr: np.ndarray) -> None:
        h, w = frame_bgr.shape[:2]
        if self.proc is None:
            self._open(h, w)
        elif (h, w) != self.size:
            raise ValueError(f"{self.path}: frame of {w}x{h} after frames of {self.size[1]}x{self.size[0]}")
        if not self.is_gif and (h % 2 or w % 2):
            frame_bgr = np.pad(frame_bgr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        try:
            self.proc.stdin.write(np.ascontiguousarray(frame_bgr, dtype=np.uint8).tobytes())
        except BrokenPipeError:
            raise RuntimeError(f"{self.path}: ffmpeg stopped: {self._stderr()}") from None
        self.frames += 1

    def _stderr(self) -> str:
        self.proc.wait()
        lines = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no message"

    def close(self) -> None:
        """Finish the file (idempotent); an ffmpeg failure is one clear error."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        err = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            raise RuntimeError(f"{self.path}: ffmpeg failed ({err.splitlines()[-1] if err else proc.returncode})")


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
