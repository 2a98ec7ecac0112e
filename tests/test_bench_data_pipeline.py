"""benchmarks/bench_data_pipeline.py: the --smoke run prints its table, and reduced-size JPEG decoding
(PIL draft) gives the full decode's resized frame up to interpolation."""

import os
import subprocess
import sys

import numpy as np
from PIL import Image

from benchmarks import bench_data_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_reduced_size_decoding_matches_full_decode_up_to_interpolation(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:720, 0:1280]
    image = np.stack([(xx / 5) % 255, (yy / 3) % 255, ((xx + yy) / 7) % 255], -1).astype(np.uint8)
    image[200:400, 300:700] = rng.integers(0, 255, 3)  # a flat object with sharp edges
    path = str(tmp_path / "frame.jpg")
    Image.fromarray(image).save(path, quality=90)
    bench = bench_data_pipeline
    for short, max_size in [(360, 640), (288, 768), (480, 864)]:
        full, reduced = bench.decode_full(path, short, max_size), bench.decode_reduced(path, short, max_size)
        assert full.shape == reduced.shape and full.shape[0] == short
        diff = np.abs(full.astype(np.int16) - reduced.astype(np.int16))
        assert diff.mean() < 3.0 and np.percentile(diff, 99) < 40, (short, diff.mean())
    # no downscale needed: draft keeps the full resolution, results are identical
    assert np.array_equal(bench.decode_full(path, 720, 1280), bench.decode_reduced(path, 720, 1280))


def test_smoke_run_prints_the_table(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_data_pipeline", "--smoke", "--workers", "0,1", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name in ("VisSTG R50", "RGNN stage 2 R50"):
        for worker in (0, 1):
            assert f"[{name}] loader NUM_WORKERS {worker}:" in proc.stdout
        assert f"[{name}] mapper (1 process):" in proc.stdout
    assert proc.stdout.count("speed-up x") == 2


def test_decode_size_follows_the_scale_crop(tmp_path):
    """The decode table's frame size is the largest training frame: MIN / MAX_SIZE_TRAIN, or with
    INPUT.SCALE_CROP the largest scale of the frame fitted into REFERENCE_SIZE."""
    from detectron2.config import get_cfg

    from projects.config import add_video_config

    path = str(tmp_path / "frame.jpg")
    Image.fromarray(np.zeros((360, 640, 3), np.uint8)).save(path)
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (288, 320), 768
    assert bench_data_pipeline.training_decode_size(cfg, path) == (320, 768)
    cfg.INPUT.SCALE_CROP.ENABLED = True  # release: s <= 1 of the frame fitted into 720 x 1280
    assert bench_data_pipeline.training_decode_size(cfg, path) == (720, 1280)
    cfg.INPUT.SCALE_CROP.SCALE_RANGE, cfg.INPUT.SCALE_CROP.REFERENCE_SIZE = (0.5, 0.75), ()
    assert bench_data_pipeline.training_decode_size(cfg, path) == (270, 480)
