#!/usr/bin/env bash
# One device call (the `device` tool) of a 15-minute GPU lease, in four stages that each leave
# their results in $OUT at once (so a call cut short still returns what was done):
#   0. smoke: the build script at a tiny size on the device (CUDA paths), fail fast;
#   1. bench: whole-scan time of the shipped model (calcscore/models/default) on the GPU;
#   2. A: the paper's CNN2 (full width, dense 256) trained, under a time budget, on the CNN1
#      candidates of every training scan, after the shipped CNN1 (kept as it is);
#   3. B: a CNN1 of the shipped architecture trained with whole-chest scans in the mix, then the
#      paper's CNN2 after it, each under a time budget.
# Evaluation (thresholds, rim margin, test and fresh cohorts) is left to the CPU machine:
#   python scripts/build_default_model.py --evaluate-only ... (see the files' model.json).
#
#   OUT=/some/folder bash scripts/gpu_session.sh            # all stages
#   OUT=/some/folder STAGES="B" bash scripts/gpu_session.sh  # only some (smoke, bench, A, B)
# Measured on an H200 (2026-11-27): smoke 43 s, bench 60 s, A 296 s (31 s cohort, 175 s CNN1
# labelling the candidates of 240 scans, 84 s training), so B did not fit the same 10-minute call.
# Files in $OUT: log.txt, bench_shipped.txt, A.tgz, B.tgz, bench_B.txt (at most 8 are fetched).
# tests/test_build_model.py runs it on the CPU at a tiny size (DEVICE=cpu TINY=1).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TQDM_DISABLE=1 PYTHONUNBUFFERED=1
: "${OUT:?set OUT to the folder for the results}"
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
WORKERS=${WORKERS:-15}
WORK=${WORK:-${TMPDIR:-/tmp}/calcscore-gpu-session}
SHIPPED=calcscore/models/default
START=$(date +%s)
LOG="$OUT/log.txt"
mkdir -p "$OUT" "$WORK"
if [ "${TINY:-0}" = 1 ]; then   # the test's sizes: seconds on a CPU
    SIZE=(--n-train 3 --train-size small --n-test 1 --test-size small --workers 2 --threads 1)
    A=(--cnn2-iterations 3); B=(--n-full 0 --cnn1-iterations 3 --cnn2-iterations 3 --max-dilation 4)
    BENCH=(--slices 12 --baseline-voxels 20); MIN_A=0.5; MIN_B1=0.5; MIN_B2=0.5  # the iteration caps stop these, on any CPU
else
    SIZE=(--n-train 120 --train-size medium --n-test 10 --test-size medium --workers "$WORKERS")
    A=(--cnn2-iterations 40000); B=(--n-full 16 --cnn1-iterations 60000 --cnn2-iterations 40000 --max-dilation 16)
    BENCH=(--slices 200 --baseline-voxels 3000 --batch-slices 32 --repeat 3)
    MIN_A=${MIN_A:-1.4}
fi
DEADLINE=${DEADLINE:-560}   # seconds from the start: B's budgets are what is left of it
STAGES=${STAGES:-smoke bench A B}
want() { case " $STAGES " in *" $1 "*) return 0;; *) return 1;; esac; }
COMMON=(--seed 2018 --device "$DEVICE" --preset workshop --cnn2-preset paper --batch-size 64
        --select-by val_balanced_accuracy --precision auto --channels-last --no-calibrate --no-choose-rim)
stamp() { echo "== $(( $(date +%s) - START )) s: $*" | tee -a "$LOG"; }
build() { "$PYTHON" scripts/build_default_model.py "$@" >> "$LOG" 2>&1; }

{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } > "$LOG"
stamp "0. smoke test on $DEVICE"
if want smoke && [ "${TINY:-0}" != 1 ] && ! build --out "$WORK/smoke" --work "$WORK/smoke-work" --seed 7 --device "$DEVICE" --preset workshop \
        --cnn2-preset paper --n-train 3 --n-full 0 --train-size small --n-test 1 --test-size small \
        --cnn1-iterations 3 --cnn2-iterations 3 --max-dilation 4 --workers 2 --rim-participants 1 --calibrate; then
    stamp "smoke test failed: stopping"; tail -c 3000 "$LOG"; exit 1
fi

if want bench; then
stamp "1. bench of the shipped model"
"$PYTHON" benchmarks/bench_inference.py --model "$SHIPPED" --device "$DEVICE" "${BENCH[@]}" \
    --variants patch_per_voxel,fp32,bf16_channels_last > "$OUT/bench_shipped.txt" 2>> "$LOG"
cat "$OUT/bench_shipped.txt" | tee -a "$LOG"
fi

if want A; then
stamp "2. A: paper CNN2 after the shipped CNN1"
build --out "$WORK/A" --work "$WORK/work-A" "${COMMON[@]}" "${SIZE[@]}" --n-full 0 \
    --cnn1 "$SHIPPED/cnn1.pt" "${A[@]}" --cnn2-minutes "$MIN_A" --train-only \
    && tar -czf "$OUT/A.tgz" -C "$WORK" A && stamp "A done"
fi
if ! want B; then stamp "end"; exit 0; fi

if [ "${TINY:-0}" != 1 ]; then
    # B's data, candidate labelling and bench take ~250 s besides training (H200)
    LEFT=$(( DEADLINE - ($(date +%s) - START) - 250 ))
    if [ "$LEFT" -lt 60 ]; then stamp "3. B skipped: $LEFT s left for training"; stamp "end"; exit 0; fi
    MIN_B1=$("$PYTHON" -c "print(round(0.6 * $LEFT / 60, 2))"); MIN_B2=$("$PYTHON" -c "print(round(0.4 * $LEFT / 60, 2))")
fi
stamp "3. B: CNN1 with whole chests ($MIN_B1 min), then paper CNN2 ($MIN_B2 min)"
# the cache of A (heart-region participants) is shared; B's whole-chest participants are added
mkdir -p "$WORK/work-B" "$WORK/work-A/cache" && ln -sfn "$WORK/work-A/cache" "$WORK/work-B/cache"
build --out "$WORK/B" --work "$WORK/work-B" "${COMMON[@]}" "${SIZE[@]}" "${B[@]}" \
    --cnn1-minutes "$MIN_B1" --cnn2-minutes "$MIN_B2" --train-only \
    && tar -czf "$OUT/B.tgz" -C "$WORK" B && stamp "B done"
if [ -f "$WORK/B/cnn2.pt" ]; then
    "$PYTHON" benchmarks/bench_inference.py --model "$WORK/B" --device "$DEVICE" "${BENCH[@]}" \
        --variants bf16_channels_last > "$OUT/bench_B.txt" 2>> "$LOG"
    cat "$OUT/bench_B.txt" | tee -a "$LOG"
fi
stamp "end"
grep -E "time budget|Error|error" "$LOG" | tail -20 || true
