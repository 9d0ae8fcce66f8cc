#!/usr/bin/env bash
# The dense demo: generate NYUv2-13-layout data, train single-task sem_seg and depth SegNets,
# then ISTA over both, and print the segmentation and depth metrics and delta_m of the ISTA model
# against the two single-task runs.
#
#   bash dev/demo_dense.sh [OUT [KEY VALUE ...]]    (make demo-dense: OUT = output/demo_dense)
#
# KEY VALUE pairs override the config of every training run (e.g. SOLVER.MAX_ITER 20 for a
# quick check); DEMO_NUM_TRAIN and DEMO_NUM_VAL set how many rooms are generated (default 200 and
# 40). VISUALIZE=N (e.g. make demo-dense VISUALIZE=4) also draws the first N validation
# images, their ground truth and the three models' predictions to OUT/pictures (tools/visualize.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/output/demo_dense}"
shift $(( $# > 0 ? 1 : 0 ))
PY="$ROOT/.venv/bin/python"
export DETECTRON2_DATASETS="$OUT/datasets"
CONFIGS="$ROOT/configs/Demo"

start=$(date +%s)
# (-W: fvcore's deprecation notice on import, not the user's to act on)
"$PY" -W ignore::FutureWarning -m sta_d2.data.synthetic nyuv2_13 --root "$DETECTRON2_DATASETS/nyuv2" --num-train "${DEMO_NUM_TRAIN:-200}" --num-val "${DEMO_NUM_VAL:-40}"
for task in sem_seg depth; do
    rm -rf "$OUT/$task"
    "$PY" "$ROOT/tools/train_net.py" --config-file "$CONFIGS/nyuv2_segnet_${task}_single.yaml" OUTPUT_DIR "$OUT/$task" "$@"
done
# The single-task results, as the {task: {metric: value}} baselines of delta_m.
"$PY" - "$OUT" > "$OUT/baselines.json" <<'PYEOF'
import json, sys
baselines = {}
for task in ("sem_seg", "depth"):
    rows = [json.loads(line) for line in open(f"{sys.argv[1]}/{task}/metrics.json")]
    final = [r for r in rows if any(k.startswith(task + "/") for k in r)][-1]
    baselines[task] = {k.split("/", 1)[1]: v for k, v in final.items() if k.startswith(task + "/")}
print(json.dumps(baselines, indent=1))
PYEOF
rm -rf "$OUT/ista"
"$PY" "$ROOT/tools/train_net.py" --config-file "$CONFIGS/nyuv2_segnet_ista.yaml" OUTPUT_DIR "$OUT/ista" \
    TEST.DENSE.BASELINES "$OUT/baselines.json" TEST.DENSE.DELTA_M_METRICS \
    "['sem_seg/mIoU', 'sem_seg/pixAcc', 'depth/abs_err', 'depth/rel_err']" "$@"
if [ "${VISUALIZE:-0}" -gt 0 ]; then
    "$PY" "$ROOT/tools/visualize.py" "$OUT/sem_seg" "$OUT/depth" "$OUT/ista" --names "sem_seg only" "depth only" \
        ISTA --num-images "$VISUALIZE" --output "$OUT/pictures"
fi
"$PY" - "$OUT" "$start" <<'PYEOF'
import json, sys, time
out = sys.argv[1]
baselines = json.load(open(f"{out}/baselines.json"))
rows = [json.loads(line) for line in open(f"{out}/ista/metrics.json")]
final = [r for r in rows if "sem_seg/mIoU" in r][-1]
print(f"\nsta_d2 dense demo (generated NYUv2-13-layout data, CPU), {time.time() - int(sys.argv[2]):.0f} s in all")
print(f"{'metric':18s} {'single-task':>12s} {'ISTA':>10s}")
for key in ("sem_seg/mIoU", "sem_seg/pixAcc", "depth/abs_err", "depth/rel_err", "depth/rmse", "depth/delta1"):
    task, metric = key.split("/")
    print(f"{key:18s} {baselines[task][metric]:12.4f} {final[key]:10.4f}")
print(f"delta_m (sem_seg mIoU, pixAcc; depth abs_err, rel_err) = {final['delta_m/delta_m']:+.2f} %")
PYEOF
