#!/usr/bin/env bash
# One call on a GPU machine (the `device` tool): build the paper-configuration model from a
# phantom cohort generated there, evaluate it on held-out phantoms, time whole-scan inference, and
# leave everything in $OUT (6 files, well under 16 MiB each):
#   model/{cnn1.pt,cnn2.pt,model.json,MODEL_CARD.md}, build.log, bench_inference.txt
#
#   OUT=/some/folder bash scripts/gpu_build.sh   # on the GPU machine; not yet run on one. Its
#   sibling gpu_session.sh ran on an H200 (2026-11-27): the cohort (64 participants) takes ~20 s,
#   CNN1 labelling every training scan's candidates for CNN2 ~0.7 s a scan, so expect > 10 min
#   with the defaults: lower CNN1_IT or N_TRAIN to fit one 10-minute call.
#
# Sizes come from the environment (defaults below). tests/test_build_model.py runs this script on
# the CPU at a tiny size (DEVICE=cpu PRESET=workshop N_TRAIN=3 ...), so it is known to work before
# device time is spent. Needs only what GPU images have (torch, numpy, scipy, pandas, statsmodels):
# calcscore is imported from this checkout, nothing is installed or downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TQDM_DISABLE=1
: "${OUT:?set OUT to the folder for the results}"
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-paper}
N_TRAIN=${N_TRAIN:-64}          # training + validation participants (soft and sharp each)
N_FULL=${N_FULL:-8}             # of those, whole-chest scans (the rest heart-region)
TRAIN_SIZE=${TRAIN_SIZE:-medium}
N_TEST=${N_TEST:-10}
TEST_SIZE=${TEST_SIZE:-full}
CNN1_IT=${CNN1_IT:-10000}
CNN2_IT=${CNN2_IT:-4000}
CNN2_SCANS=${CNN2_SCANS:-0}     # 0: all training scans
MAX_DILATION=${MAX_DILATION:-}  # empty: the preset's
CALIBRATE=${CALIBRATE:-0}       # 1: choose CNN2's thresholds on the validation scans (else 0.5)
WORKERS=${WORKERS:-12}
THREADS=${THREADS:-}
BENCH_SLICES=${BENCH_SLICES:-200}
BENCH_VOXELS=${BENCH_VOXELS:-3000}
BENCH_VARIANTS=${BENCH_VARIANTS:-patch_per_voxel,fp32,channels_last,bf16_channels_last}
PYTHON=${PYTHON:-python3}

mkdir -p "$OUT/model"
args=(--out "$OUT/model" --work "${WORK:-${TMPDIR:-/tmp}/calcscore-gpu-build}" --preset "$PRESET"
      --device "$DEVICE" --n-train "$N_TRAIN" --n-full "$N_FULL" --train-size "$TRAIN_SIZE"
      --n-test "$N_TEST" --test-size "$TEST_SIZE" --cnn1-iterations "$CNN1_IT"
      --cnn2-iterations "$CNN2_IT" --workers "$WORKERS")
if [ "$CNN2_SCANS" != 0 ]; then args+=(--cnn2-scans "$CNN2_SCANS"); fi
if [ -n "$MAX_DILATION" ]; then args+=(--max-dilation "$MAX_DILATION"); fi
if [ -n "$THREADS" ]; then args+=(--threads "$THREADS"); fi
if [ "$CALIBRATE" = 1 ]; then args+=(--calibrate); else args+=(--no-calibrate); fi
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true; } > "$OUT/build.log"
"$PYTHON" scripts/build_default_model.py "${args[@]}" >> "$OUT/build.log" 2>&1
"$PYTHON" scripts/write_model_card.py "$OUT/model" > /dev/null
bench=(--model "$OUT/model" --device "$DEVICE" --slices "$BENCH_SLICES" --baseline-voxels "$BENCH_VOXELS"
       --variants "$BENCH_VARIANTS")
if [ -n "$THREADS" ]; then bench+=(--threads "$THREADS"); fi
"$PYTHON" benchmarks/bench_inference.py "${bench[@]}" > "$OUT/bench_inference.txt" 2>&1
cat "$OUT/bench_inference.txt"
