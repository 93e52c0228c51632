#!/bin/bash
# Where a batch's GPU time goes: Nsight Compute times every kernel of one `vitbatch bench` run
# (four batches: one untimed, three timed; kernels serialised, clocks and caches left alone),
# and scripts/gpu_kernel_shares.py sums the durations by kernel. For deciding what to speed
# up next on a lent GPU; the throughput figures come from gpu_check.sh, not from this.
#
#   on the GPU:  bash scripts/gpu_profile.sh MODEL_DIR PRECISION BATCH LABEL
#                (after gpu_check.sh has unpacked .gpu; writes $OUT/profile-LABEL.csv)
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 4 ] || { echo "usage: gpu_profile.sh MODEL_DIR PRECISION BATCH LABEL" >&2; exit 2; }
B=${BUNDLE:-.gpu}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$ncu" ] || { echo "gpu_profile: ncu not found" >&2; exit 1; }
cublas=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/lib /usr/lib/x86_64-linux-gnu /opt /usr/local/lib \
           -name 'libcublasLt.so.13' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$PWD/$B/lib:$(dirname "$cublas")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
csv="$OUT/profile-$4.csv"
timeout 240 "$ncu" --clock-control none --cache-control none --metrics gpu__time_duration.sum --print-units base \
  --csv --log-file "$csv" "$B/bin/vitbatch" bench --backend cuda --precision "$2" -m "$1" --batch-size "$3" \
  --seconds 0.01 --resident-input >/dev/null 2>"$OUT/profile-$4.err" || { echo "gpu_profile: ncu failed: $(tail -3 "$OUT/profile-$4.err")"; exit 1; }
python3 scripts/gpu_kernel_shares.py "$csv" --batches 4 --title "$4"
