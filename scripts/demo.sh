#!/usr/bin/env bash
# The main job (`make demo`): synthetic data -> train VisSTG (tiny config) -> evaluate -> results + demo video.
# Environment: DEMO_ITERS overrides the training length (e.g. DEMO_ITERS=50 for a smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=${OUT:-output/demo}
export DETECTRON2_DATASETS=${DETECTRON2_DATASETS:-$PWD/datasets}
mkdir -p "$OUT"

echo "== 1/4 synthetic YouTube-VIS dataset (generated once under $DETECTRON2_DATASETS/synthetic_vis)"
$PY -c "from detectron2.data import DatasetCatalog; import projects.data; \
print({n: len(DatasetCatalog.get(n)) for n in ('synthetic_vis_train', 'synthetic_vis_val')}, 'videos')"

echo "== 2/4 evaluator sanity check: GT oracle with 20% of frame masks dropped"
$PY train_net.py --config-file configs/oracle/gt_oracle.yaml --eval-only \
  MODEL.ORACLE.DROP_FRAME_PROB 0.2 OUTPUT_DIR "$OUT/oracle" 2>&1 | grep "copypaste" || true

echo "== 3/4 train + evaluate VisSTG (configs/vis_stg/synthetic_R18.yaml)"
ITERS=()
[ -n "${DEMO_ITERS:-}" ] && ITERS=(SOLVER.MAX_ITER "$DEMO_ITERS")
$PY train_net.py --config-file configs/vis_stg/synthetic_R18.yaml OUTPUT_DIR "$OUT/vis_stg" "${ITERS[@]}" 2>&1 \
  | tee "$OUT/vis_stg_train.log" | grep -E "copypaste|iter: .*(0|5)0 |Overall training speed" || true
echo "results: $OUT/vis_stg/inference/synthetic_vis_val/results.json (+ results.zip)"

echo "== 4/4 demo video on a synthetic validation video"
$PY -m projects.data.synthetic --out "$OUT/demo_video" --videos 1 --frames 48 --seed 7 --split demo --mp4 >/dev/null
$PY demo/demo.py --config-file configs/vis_stg/synthetic_R18.yaml --video-input "$OUT"/demo_video/demo/videos/*.mp4 \
  --output "$OUT/demo_vis_stg.mp4" --json "$OUT/demo_vis_stg.json" MODEL.WEIGHTS "$OUT/vis_stg/model_final.pth"
echo "demo video: $OUT/demo_vis_stg.mp4"
