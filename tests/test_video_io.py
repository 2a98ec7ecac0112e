"""projects/utils/video_io.py on real-world files written here: truncated and variable-frame-rate videos, odd sizes,
grayscale / 16-bit / corrupt frame files, H.264 and GIF output, a writer killed mid-run."""

import os
import re
import signal
import subprocess
import textwrap

import cv2
import numpy as np
import pytest

from projects.utils.video_io import VideoReadError, VideoSource, VideoWriter, count_frames, read_image_file
from tests.train_cli import run_python

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def _frame(i, h=48, w=64):
    f = np.full((h, w, 3), 40, np.uint8)
    cv2.circle(f, (i % w, h // 2), max(h // 5, 3), (0, 200, 255), -1)
    return f


def _write(path, n, h=48, w=64, fps=25.0):
    writer = VideoWriter(str(path), fps)
    for i in range(n):
        writer.write(_frame(i, h, w))
    writer.close()
    return writer


def _probe(path):
    """(codec, width, height) of the first video stream, from the wheel's ffmpeg."""
    err = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    m = re.search(r"Video: (\w+).*?, (\d+)x(\d+)", err)
    assert m, err
    return m.group(1), int(m.group(2)), int(m.group(3))


def test_mp4_is_h264_with_right_frames_and_size(tmp_path):
    path = tmp_path / "out.mp4"
    _write(path, 12, 48, 64)
    assert _probe(path) == ("h264", 64, 48)
    assert count_frames(str(path)) == (12, (48, 64))


def test_odd_size_is_padded_to_even(tmp_path):
    path = tmp_path / "odd.mp4"
    _write(path, 5, 47, 63)
    assert _probe(path) == ("h264", 64, 48)
    assert count_frames(str(path))[0] == 5


def test_gif_output(tmp_path):
    from PIL import Image, ImageSequence

    path = tmp_path / "out.gif"
    _write(path, 6, 40, 50)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.size == (50, 40)
        assert sum(1 for _ in ImageSequence.Iterator(im)) == 6


def test_unknown_output_extension_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="output must end with"):
        VideoWriter(str(tmp_path / "out.xyz"), 25)


def test_killed_writer_leaves_a_playable_file(tmp_path):
    """Python dies (SIGKILL) without closing: ffmpeg sees the pipe close and finalises the mp4."""
    path = tmp_path / "killed.mp4"
    code = textwrap.dedent(f"""
        import os, signal, numpy as np
        from projects.utils.video_io import VideoWriter
        w = VideoWriter({str(path)!r}, 25)
        for i in range(9):
            w.write(np.full((48, 64, 3), i * 20, np.uint8))
        w.proc.stdin.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = run_python(["-c", code])
    assert proc.returncode == -signal.SIGKILL
    for _ in range(100):  # ffmpeg finishes on its own, shortly after
        if count_frames(str(path))[0] == 9:
            break
        import time

        time.sleep(0.1)
    assert count_frames(str(path)) == (9, (48, 64))
    assert _probe(path)[0] == "h264"


def test_truncated_video_reports_decoded_of_header_frames(tmp_path):
    path = tmp_path / "full.mp4"
    _write(path, 444)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    mdat = data.index(b"mdat")  # +faststart: the header (moov, 444 frames) precedes the frame data
    truncated.write_bytes(data[: mdat + (len(data) - mdat) // 6])
    warnings = []
    source = VideoSource(str(truncated), on_warning=warnings.append)
    assert len(source) == 444
    frames = list(source)
    assert 0 < len(frames) < 444 and all(f.shape == (48, 64, 3) for f in frames)
    assert len(warnings) == 1 and f"decoded {len(frames)} of 444 frames" in warnings[0] and "truncated" in warnings[0]
    with pytest.raises(VideoReadError, match=f"decoded {len(frames)} of 444 frames"):
        list(VideoSource(str(truncated), strict=True))
    # a complete file gives no warning; --max-frames is not a truncation
    warnings.clear()
    assert len(list(VideoSource(str(path), on_warning=warnings.append))) == 444
    assert len(list(VideoSource(str(path), max_frames=10, on_warning=warnings.append))) == 10
    assert warnings == []


def test_variable_frame_rate_video_reads_every_frame(tmp_path):
    for i in range(8):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), _frame(i * 7))
    durations = [0.04, 0.04, 0.2, 0.04, 0.5, 0.1, 0.04, 0.04]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"file 'f{i}.png'\nduration {d}\n" for i, d in enumerate(durations)) + "file 'f7.png'\n")
    path = tmp_path / "vfr.mp4"
    subprocess.run(
        [
            FFMPEG,
            "-loglevel",
            "error",
            "-y",
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            str(listing),
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )
    warnings = []
    source = VideoSource(str(path), on_warning=warnings.append)
    frames = list(source)
    assert len(frames) >= 8 and source.fps > 0 and np.isfinite(source.fps)
    assert source.decoded == len(frames)
    assert not any("decoded" in w for w in warnings)


def test_frame_folder_grayscale_16bit_and_natural_order(tmp_path):
    gray = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    cv2.imwrite(str(tmp_path / "frame_2.png"), gray)
    deep = (np.tile(np.arange(64, dtype=np.uint16), (48, 1)) * 1000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "frame_10.png"), deep)
    color = _frame(3)
    cv2.imwrite(str(tmp_path / "frame_1.png"), color)
    source = VideoSource(str(tmp_path))
    assert [os.path.basename(f) for f in source.files] == ["frame_1.png", "frame_2.png", "frame_10.png"]
    frames = list(source)
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    np.testing.assert_array_equal(frames[0], color)
    np.testing.assert_array_equal(frames[1][:, :, 0], gray)
    expected = np.round(deep.astype(np.float32) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(frames[2][:, :, 2], expected)  # full 16-bit range kept, not clipped at 255
    assert frames[2].max() > 200


def _corrupt_folder(tmp_path):
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i:05d}.jpg"), _frame(i * 9))
    data = (tmp_path / "00002.jpg").read_bytes()
    (tmp_path / "00002.jpg").write_bytes(data[: len(data) // 2])  # truncated: OpenCV would decode it silently
    bad = bytearray((tmp_path / "00003.jpg").read_bytes())
    bad[2:40] = bytes(range(38))  # garbage over the header segments
    (tmp_path / "00003.jpg").write_bytes(bytes(bad))
    return tmp_path


def test_corrupt_jpegs_are_skipped_with_a_warning(tmp_path):
    folder = _corrupt_folder(tmp_path)
    assert cv2.imread(str(folder / "00002.jpg")) is not None  # the silent wrong result this guards against
    warnings = []
    source = VideoSource(str(folder), on_warning=warnings.append)
    indexed = list(source.indexed())
    assert [i for i, _ in indexed] == [0, 1, 4]
    assert [i for i, _ in source.skipped] == [2, 3]
    assert len(warnings) == 2 and "00002.jpg" in warnings[0] and "00003.jpg" in warnings[1]
    assert all("skipped" in w for w in warnings)


def test_corrupt_jpeg_with_strict_fails_naming_it(tmp_path):
    folder = _corrupt_folder(tmp_path)
    with pytest.raises(VideoReadError, match=r"00002\.jpg.*--strict"):
        list(VideoSource(str(folder), strict=True))
    with pytest.raises(VideoReadError, match="00003.jpg"):
        read_image_file(str(folder / "00003.jpg"))


def test_unreadable_inputs_are_errors(tmp_path):
    with pytest.raises(VideoReadError, match="does not exist"):
        VideoSource(str(tmp_path / "missing.mp4"))
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    with pytest.raises(VideoReadError, match="cannot read any frame"):
        VideoSource(str(tmp_path / "junk.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoReadError, match="no image frames"):
        VideoSource(str(tmp_path / "empty"))


def test_frame_folder_with_two_sizes_names_the_odd_file(tmp_path):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i:05d}.png"), _frame(i, *((60, 80) if i == 2 else (48, 64))))
    source = VideoSource(str(tmp_path))
    seen = []
    with pytest.raises(VideoReadError, match=r"00002\.png: frame of 80x60 after frames of 64x48"):
        for index, _ in source.indexed():
            seen.append(index)
    assert seen == [0, 1]  # the frames before it were read


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_max_frames_must_be_a_positive_count(tmp_path, bad):
    path = tmp_path / "v.mp4"
    _write(path, 5)
    with pytest.raises(ValueError, match="max_frames must be a whole number >= 1"):
        VideoSource(str(path), max_frames=bad)
    assert len(list(VideoSource(str(path), max_frames=2))) == 2
