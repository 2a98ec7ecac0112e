#!/usr/bin/env bash
# Idempotent set-up of .venv/ (docs/install.md). Order matters:
#   torch/torchvision -> torch-scatter (no build isolation) -> detectron2 wheel -> the rest -> this project.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# The stamp names the hash of this script and pyproject.toml: editing the install steps or the packaged modules
# re-runs them (each step is idempotent; the last one re-installs this project).
STAMP="$VENV/.setup-done-$(cat "$0" pyproject.toml | sha1sum | cut -c1-12)"
if [ -f "$STAMP" ]; then exit 0; fi
PY=${PYTHON:-python3}
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
# Every package below is pinned by requirements/constraints.txt (the working set this project was verified with),
# so a fresh machine installs the same versions next year.
PIN="-c requirements/constraints.txt"
$PIP install -q $PIN --upgrade pip 'setuptools<81' wheel
$PIP install -q $PIN torch==2.14.1 torchvision==0.29.1
if ! "$VENV/bin/python" -c "import torch_scatter" 2>/dev/null; then
  # Only an sdist exists; it compiles against the installed torch (~6 min on 2 cores). Optional at
  # run time (projects/graph/scatter.py falls back to native torch ops), so a failed build is not fatal.
  MAX_JOBS=2 $PIP install -q $PIN --no-build-isolation torch-scatter==2.1.2 \
    || echo "WARNING: torch-scatter failed to build; the native scatter fallback will be used" >&2
fi
SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if ! "$VENV/bin/python" -c "import detectron2" 2>/dev/null; then
  # detectron2 is not on PyPI; sal-detectron2 republishes it as a cp310 wheel whose pure-Python part
  # works on 3.11 (its compiled _C is never imported by this project).
  $PIP install -q --no-deps --only-binary=:all: --python-version 3.10 --implementation cp \
    --target "$SITE" --upgrade sal-detectron2==0.7.2
fi
$PIP install -q $PIN fvcore iopath pycocotools omegaconf hydra-core yacs termcolor tabulate cloudpickle \
  tqdm matplotlib Pillow imageio-ffmpeg 'setuptools<81' opencv-python-headless scipy tensorboard psutil pytest pytest-timeout ruff
$PIP install -q --no-deps -e .
"$VENV/bin/python" -c "import torch, torchvision, detectron2, pycocotools, cv2; print('setup ok: torch', torch.__version__, 'detectron2', detectron2.__version__)"
echo "installed versions:"; $PIP list --format=freeze 2>/dev/null | tr '\n' ' '; echo
touch "$STAMP"
echo "set-up took $(( $(date +%s) - start )) s"
