#!/usr/bin/env bash
# The main job (`make demo`): synthetic data -> oracle check of the evaluator -> train each model on CPU ->
# evaluate on synthetic_vis_val (results.json + results.zip) -> demo video with track-coloured masks and the
# README picture (a 4-frame contact sheet of it, drawn by projects.visualize).
# Environment:
#   MODELS      which models to train, in order (default "vis_stg"; "vis_stg vis_rgnn" also trains both
#               RGNN-VIS stages, ~20 more minutes on 2 cores)
#   DEMO_ITERS  overrides every training's SOLVER.MAX_ITER (e.g. DEMO_ITERS=20 for a smoke run)
#   OUT         output folder (default output/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=${OUT:-output/demo}
MODELS=${MODELS:-vis_stg}
export DETECTRON2_DATASETS=${DETECTRON2_DATASETS:-$PWD/datasets}
for model in $MODELS; do  # fail before minutes of work, not after them
  case $model in
    vis_stg | vis_rgnn) ;;
    *) echo "unknown model '$model' in MODELS (expected vis_stg and/or vis_rgnn)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
ITERS=()
[ -n "${DEMO_ITERS:-}" ] && ITERS=(SOLVER.MAX_ITER "$DEMO_ITERS" SOLVER.STEPS "()")

train() {  # train NAME CONFIG [overrides...]: trains into $OUT/NAME, evaluates on synthetic_vis_val, shows AP
  local name=$1 config=$2
  shift 2
  echo "   training $config -> $OUT/$name (log: $OUT/$name.log)"
  local start=$(date +%s)
  $PY train_net.py --config-file "$config" OUTPUT_DIR "$OUT/$name" "$@" "${ITERS[@]}" > "$OUT/$name.log" 2>&1 \
    || { tail -30 "$OUT/$name.log"; echo "training $name failed (log: $OUT/$name.log)" >&2; exit 1; }
  grep -E "copypaste" "$OUT/$name.log" | tail -2
  echo "   $name: $(( $(date +%s) - start )) s; results: $OUT/$name/inference/synthetic_vis_val/results.json (+ .zip)"
}

echo "== 1/4 synthetic YouTube-VIS dataset (generated once under $DETECTRON2_DATASETS/synthetic_vis)"
SPLITS="'synthetic_vis_train', 'synthetic_vis_val'"
case " $MODELS " in *" vis_rgnn "*) SPLITS="$SPLITS, 'synthetic_vis_train_large'" ;; esac  # RGNN-VIS trains on it
$PY -c "from detectron2.data import DatasetCatalog; import projects.data; \
print({n: len(DatasetCatalog.get(n)) for n in ($SPLITS)}, 'videos')"

echo "== 2/4 evaluator sanity check: GT oracle with 20% of frame masks dropped"
$PY train_net.py --config-file configs/oracle/gt_oracle.yaml --eval-only MODEL.WEIGHTS "" \
  MODEL.ORACLE.DROP_FRAME_PROB 0.2 OUTPUT_DIR "$OUT/oracle" 2>&1 | grep "copypaste" || true

echo "== 3/4 train + evaluate: $MODELS"
DEMO_RUNS=()
for model in $MODELS; do
  case $model in
    vis_stg)
      train vis_stg configs/vis_stg/synthetic_R18.yaml
      DEMO_RUNS+=("vis_stg configs/vis_stg/synthetic_R18.yaml $OUT/vis_stg/model_final.pth") ;;
    vis_rgnn)
      train vis_rgnn_stage1 configs/vis_rgnn/synthetic_R18_stage1.yaml
      train vis_rgnn configs/vis_rgnn/synthetic_R18_stage2.yaml MODEL.WEIGHTS "$OUT/vis_rgnn_stage1/model_final.pth"
      DEMO_RUNS+=("vis_rgnn configs/vis_rgnn/synthetic_R18_stage2.yaml $OUT/vis_rgnn/model_final.pth") ;;
  esac
done

echo "== 4/4 demo video on a synthetic validation-style video (48 frames)"
$PY -m projects.data.synthetic --out "$OUT/demo_video" --videos 1 --frames 48 --seed 7 --split demo --mp4 >/dev/null
for run in "${DEMO_RUNS[@]}"; do
  read -r name config weights <<< "$run"
  $PY demo/demo.py --config-file "$config" --video-input "$OUT"/demo_video/demo/videos/vid_0001.mp4 \
    --output "$OUT/demo_$name.mp4" --json "$OUT/demo_$name.json" MODEL.WEIGHTS "$weights"
  echo "demo video: $OUT/demo_$name.mp4 (results JSON: $OUT/demo_$name.json)"
  # The README picture (docs/demo_<model>.png): 4 frames of the same tracks, drawn by the results viewer.
  if ! $PY -c 'import json, sys; sys.exit(not json.load(open(sys.argv[1])))' "$OUT/demo_$name.json"; then
    echo "no demo picture for $name: it found no track in the demo video (a smoke run with DEMO_ITERS?)"
    continue
  fi
  $PY -m projects.visualize "$OUT/demo_$name.json" --out "$OUT/picture_$name" --format png --sheet-frames 4 \
    --dataset "$OUT/demo_video/demo.json:$OUT/demo_video/demo/JPEGImages" > /dev/null
  mv "$OUT/picture_$name/vid_0001.png" "$OUT/demo_$name.png" && rm -r "$OUT/picture_$name"
  echo "demo picture: $OUT/demo_$name.png (the README's: cp $OUT/demo_$name.png docs/)"
done
