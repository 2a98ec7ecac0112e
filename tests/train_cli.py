"""The entry points run as a user runs them -- ``python train_net.py ...``, ``python demo/demo.py ...`` in a fresh
interpreter from the repository root, this checkout importable (also ``python -c CODE``) -- and the narrow-model
options the CLI tests share."""

import os
import subprocess
import sys
from typing import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: RGNN-VIS with narrow heads: seconds per training iteration on the CPU.
RGNN_NARROW = [
    "MODEL.RGNN.DETECTOR.PROTO_CHANNELS", "16",
    "MODEL.RGNN.DETECTOR.HEAD_CHANNELS", "16",
    "MODEL.RGNN.APPEARANCE.CHANNELS", "8",
    "MODEL.RGNN.APPEARANCE.HIDDEN", "4",
    "MODEL.RGNN.GNN.DIM", "16",
]  # fmt: skip


def cli_env(**extra: str) -> dict:
    """The environment of a CLI run: this checkout first on the path, one OpenMP thread, ``extra`` variables."""
    return dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", **extra)


def run_cli(script: str, args: Sequence[str], timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` (``SCRIPT`` relative to the repository root) from the root; stdout / stderr as text."""
    return run_python([script, *args], timeout, **env)


def run_python(argv: Sequence[str], timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    """``python ARGV`` from the repository root in :func:`cli_env` (with ``env``); stdout / stderr as text."""
    return subprocess.run(
        [sys.executable, *map(str, argv)],
        cwd=ROOT,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
