"""benchmarks/gpu_check.sh runs on the CPU at tiny sizes (``--device cpu --smoke``) so that it cannot rot."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_smoke_on_cpu():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--smoke", "--frames", "3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-5000:]
    for name in ("VisSTG R50", "RGNN stage 1 R50", "RGNN stage 2 R50"):
        assert f"[{name}] train AMP" in out and "non-finite losses 0/" in out.split(f"[{name}] train AMP")[1]
        assert f"[{name}] streaming 3 frames at 64x96" in out and f"[{name}] host syncs: profiler" in out
    assert "bench_host_syncs.py:" in out and "2-process DDP: skipped" in out
