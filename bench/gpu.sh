#!/usr/bin/env bash
# Every GPU benchmark of bench/README.md as one script, for a lent GPU machine (PyTorch,
# scikit-learn, pandas, pyarrow; no Ray, no CIFAR: digits tiled to CIFAR size). From the
# repository root:  bash bench/gpu.sh   (results in $OUT, default ./gpu-results; each command
# is cut at $LIMIT seconds, default 120, so the whole script stays under about 10 minutes).
set -u
OUT=${OUT:-gpu-results}
LIMIT=${LIMIT:-120}
mkdir -p "$OUT"
export PYTHONPATH=.
run() {
    local name=$1
    shift
    echo "== $name: $*" | tee "$OUT/$name.txt"
    timeout "$LIMIT" "$@" 2>&1 | tee -a "$OUT/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]}" | tee -a "$OUT/$name.txt"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; python3 -c "import torch; print(torch.__version__)"; } \
    2>&1 | tee "$OUT/machine.txt"
run train_throughput python3 bench/train_throughput.py --device cuda --dataset digits --repeat 35 --num-workers 8
run train_throughput_amp python3 bench/train_throughput.py --device cuda --dataset digits --repeat 35 \
    --num-workers 8 --baseline-amp --cadence-epochs 0
run train_throughput_data python3 bench/train_throughput.py --device cuda --dataset digits --repeat 35 \
    --num-workers 8 --data-only
run pack_throughput python3 bench/pack_throughput.py --device cuda --width 192 --depth 3 --dataset digits \
    --repeat 35 --ks 1,2,4,8 --json "$OUT/pack_throughput.json"
run measure_seconds python3 bench/measure_seconds.py --device cuda --dataset digits --repeat 35 \
    --json "$OUT/measure_seconds.json"
