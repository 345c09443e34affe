#!/usr/bin/env bash
# Retrain the shipped CNN2 on the CPU on phantoms of the current generator (after the
# 2026-11-28 aorta/spine fix; both shipped networks learned from phantoms made before it),
# evaluate it as the shipped model was evaluated, and print it beside the shipped model.
# Nothing is shipped: a person compares the table and, if the new model is better, copies it into
# calcscore/models/default, updates model.json's provenance and runs write_model_card.py.
# Run on 2026-11-29 it made CNN2 worse (TAC F1 on every cohort; figures in
# scripts/experiments/2026-11-29_cpu_cnn2_retrain_fixed_phantoms.json): 40 scans are too few.
# Run on 2026-12-04 with CNN1 fine-tuned first, LR=1e-4 and 64 scans (the third example below,
# CNN2_MINUTES=25 CNN2_ITERATIONS=8000; 80 min on a 2-core AVX-512 BF16 CPU) it was worse too (TAC F1
# on every cohort; scripts/experiments/2026-12-04_cpu_cnn1_cnn2_finetune_fixed_phantoms.json).
#
#     WORK=/tmp/retrain bash scripts/cpu_retrain_cnn2.sh        # 1 h 45 min on a 2-core AVX2 CPU
#     DRY=1 WORK=/tmp/x bash scripts/cpu_retrain_cnn2.sh        # print the commands only
#     CNN1_ITERATIONS=3000 LR=1e-4 CNN2_SCANS=64 CNN2_FULL_SCANS=6 WORK=/tmp/r2 bash scripts/cpu_retrain_cnn2.sh
#                 # also fine-tune CNN1 first, both at a fine-tuning learning rate, on more scans
#
# Stages; each one is skipped when its output is there, so a run that was cut off goes on where it
# stopped when started again with the same WORK (CNN2's training resumes from its checkpoint):
#   train     build_default_model.py --train-only: the shipped CNN1 given, CNN2 from the shipped
#             weights, 40 training scans (at most 4 whole chests), at most CNN2_MINUTES of iterations
#   rim       the shipped rim margin carried into the new model.json (re-choosing it costs ~40 min)
#   evaluate  build_default_model.py --evaluate-only --calibrate: thresholds on validation scans,
#             then the held-out test set P0120..P0129 and the whole-chest test scans
#   compare   scripts/evaluate_comparison_cohorts.py on the fresh, heart and whole cohorts
#   table     the new model beside the shipped one (pooled F1, CAC and TAC, soft and sharp)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${WORK:?set WORK to a folder for the caches, the model and the logs}"
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}
CNN2_MINUTES=${CNN2_MINUTES:-20}
CNN2_ITERATIONS=${CNN2_ITERATIONS:-6000}
CNN2_SCANS=${CNN2_SCANS:-40}            # CNN2's training scans (CNN1 labels every candidate of each)
CNN2_FULL_SCANS=${CNN2_FULL_SCANS:-4}   # of those, at most this many whole chests
CNN1_ITERATIONS=${CNN1_ITERATIONS:-0}   # > 0: fine-tune the shipped CNN1 this many iterations first
CNN1_MINUTES=${CNN1_MINUTES:-12}
LR=${LR:-}                              # Adam's learning rate for both (empty: the presets' 5e-4)
SHIPPED=calcscore/models/default
MODEL="$WORK/model"
COMPARISON_OF_SHIPPED=scripts/experiments/2026-11-28_shipped_on_comparison_scans_after_aorta_spine_fix.json
# the shipped model's data settings (model.json "command"), so that the participants split alike
DATA=(--preset workshop --seed 2018 --n-train 120 --n-full 16 --train-size medium --n-test 10
      --test-size medium --n-test-full 0 --device cpu --threads "$THREADS" --workers "$WORKERS")

run() {  # print the command; run it unless DRY=1
    echo "+ $*"
    if [ "${DRY:-0}" != 1 ]; then "$@"; fi
}

mkdir -p "$WORK"
if [ "${DRY:-0}" != 1 ]; then exec > >(tee -a "$WORK/retrain.log") 2>&1; fi
echo "== $(date -u +%FT%TZ) cpu_retrain_cnn2 in $WORK"

# train: the networks are copied first, so that the shipped files are only ever read
if [ ! -f "$MODEL/model.json" ]; then
    run mkdir -p "$WORK/given"
    run cp "$SHIPPED/cnn1.pt" "$WORK/given/cnn1.pt"
    run cp "$SHIPPED/cnn2.pt" "$WORK/given/cnn2_init.pt"
    if [ "$CNN1_ITERATIONS" -gt 0 ]; then  # CNN1 from the shipped weights, its own batch size
        CNN1=(--cnn1-init "$WORK/given/cnn1.pt" --cnn1-iterations "$CNN1_ITERATIONS" --cnn1-minutes "$CNN1_MINUTES")
    else
        CNN1=(--cnn1 "$WORK/given/cnn1.pt" --batch-size 64)
    fi
    run "$PYTHON" scripts/build_default_model.py --out "$MODEL" --work "$WORK/work" "${DATA[@]}" \
        "${CNN1[@]}" --cnn2-init "$WORK/given/cnn2_init.pt" --cnn2-preset paper \
        --cnn2-iterations "$CNN2_ITERATIONS" --cnn2-minutes "$CNN2_MINUTES" --cnn2-scans "$CNN2_SCANS" \
        --cnn2-full-scans "$CNN2_FULL_SCANS" ${LR:+--learning-rate "$LR"} --select-by val_balanced_accuracy --train-only
fi

if [ ! -f "$WORK/rim.done" ]; then
    run "$PYTHON" - "$SHIPPED/model.json" "$MODEL/model.json" <<'EOF'
import json, sys
from pathlib import Path
shipped, new = (json.loads(Path(p).read_text()) for p in sys.argv[1:3])
for key in ("rim_fill", "rim_sigmas", "rim_choice"):
    if key in shipped:
        new[key] = shipped[key]
new.setdefault("notes", []).append(
    f"rim fill margin carried over from the model this one would replace ({shipped.get('rim_sigmas')} noise SDs, "
    "chosen for it on its validation participants), not re-chosen for this one")
tmp = Path(sys.argv[2] + ".tmp")
tmp.write_text(json.dumps(new, indent=1))
tmp.replace(sys.argv[2])
print("rim margin carried over:", shipped.get("rim_sigmas"))
EOF
    run touch "$WORK/rim.done"
fi

if [ ! -f "$WORK/evaluate.done" ]; then
    run "$PYTHON" scripts/build_default_model.py --out "$MODEL" --work "$WORK/work" "${DATA[@]}" \
        --evaluate-only --calibrate --calibration-scans 8 --cnn2-full-scans "$CNN2_FULL_SCANS" --no-choose-rim
    run touch "$WORK/evaluate.done"
fi

if [ ! -f "$WORK/comparison.json" ]; then
    run "$PYTHON" scripts/evaluate_comparison_cohorts.py "$MODEL" "$WORK/comparison.json" fresh,heart,whole
fi

run "$PYTHON" - "$SHIPPED/model.json" "$MODEL/model.json" "$COMPARISON_OF_SHIPPED" "$WORK/comparison.json" <<'EOF'
import json, sys
from pathlib import Path
shipped, new, cmp_shipped, cmp_new = (json.loads(Path(p).read_text()) for p in sys.argv[1:5])
f = lambda v: "n/a" if v is None or v != v else f"{v:.3f}"
print("pooled F1 (shipped -> new)")
print(f"{'cohort':32} {'kernel':6} {'CAC':16} {'TAC':16}")
for name, a, b in [("test P0120..P0129", shipped["test_metrics"], new["test_metrics"]),
                   ("test whole chest", shipped.get("test_metrics_whole_chest", {}),
                    new.get("test_metrics_whole_chest", {}))] + [
        (k, cmp_shipped[k], cmp_new[k]) for k in cmp_new if isinstance(cmp_new[k], dict) and k in cmp_shipped]:
    for kernel in ("soft", "sharp"):
        if kernel in a and kernel in b:
            cells = [f"{f(a[kernel][g]['f1_pooled'])} -> {f(b[kernel][g]['f1_pooled'])}" for g in ("CAC", "TAC")]
            print(f"{name:32} {kernel:6} {cells[0]:16} {cells[1]:16}")
EOF
echo "== $(date -u +%FT%TZ) done: $MODEL"
