#!/usr/bin/env bash
# The demo: generate the shapes dataset (COCO layout), train Mask R-CNN with ISTA on the CPU,
# evaluate with COCOEvaluator and print bbox and segm AP.
#
#   bash dev/demo.sh [OUT [KEY VALUE ...]]    (make demo: OUT = output/demo)
#
# KEY VALUE pairs override the training config (e.g. SOLVER.MAX_ITER 20 for a quick check);
# DEMO_NUM_TRAIN and DEMO_NUM_VAL set how many images are generated (default 400 and 50).
# VISUALIZE=N (e.g. make demo VISUALIZE=4) also draws the ground truth and predictions of the
# first N validation images to OUT/pictures (tools/visualize.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/output/demo}"
shift $(( $# > 0 ? 1 : 0 ))
PY="$ROOT/.venv/bin/python"
export DETECTRON2_DATASETS="$OUT/datasets"

start=$(date +%s)
# (-W: fvcore's deprecation notice on import, not the user's to act on)
"$PY" -W ignore::FutureWarning -m sta_d2.data.synthetic coco --root "$DETECTRON2_DATASETS/shapes" --num-train "${DEMO_NUM_TRAIN:-400}" --num-val "${DEMO_NUM_VAL:-50}"
rm -rf "$OUT/train"
"$PY" "$ROOT/tools/train_net.py" --config-file "$ROOT/configs/Demo/shapes_mask_rcnn_ista.yaml" \
    OUTPUT_DIR "$OUT/train" "$@"
if [ "${VISUALIZE:-0}" -gt 0 ]; then
    "$PY" "$ROOT/tools/visualize.py" "$OUT/train" --names ISTA --num-images "$VISUALIZE" --output "$OUT/pictures"
fi
"$PY" - "$OUT/train/metrics.json" "$start" <<'PYEOF'
import json, sys, time
rows = [json.loads(line) for line in open(sys.argv[1])]
final = [r for r in rows if "bbox/AP" in r][-1]
steps = max(r["iteration"] for r in rows if "total_loss" in r) + 1
print(f"\nsta_d2 demo (ISTA, generated shapes data, CPU): {steps} optimizer steps, "
      f"{time.time() - int(sys.argv[2]):.0f} s in all")
for key in ("bbox/AP", "bbox/AP50", "segm/AP", "segm/AP50"):
    print(f"  {key:10s} {final[key]:6.2f}")
PYEOF
