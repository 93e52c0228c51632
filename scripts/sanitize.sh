#!/usr/bin/env bash
# Builds vitbatch with AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/ and runs
# the tests that use small synthetic models (the real ViT-Ti is slow there): the doctest unit
# and op tests (every op of every backend), streaming, hostile inputs, synthetic checkpoints,
# and the timm families (every model variant's loading, derived weights and graph).
# Any sanitizer report fails the run (UBSan does not recover).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${VITBATCH_SHARED:-$root/../shared}"
build="$root/build-asan"
timm_python="$("$root/scripts/timm_venv.sh")"
cmake -S "$root" -B "$build" -DVITBATCH_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DVITBATCH_SHARED_DIR="$shared" -DVITBATCH_TIMM_PYTHON="$timm_python" >/dev/null
cmake --build "$build" -j2 >"$build/build.log" 2>&1 || { tail -n 60 "$build/build.log" >&2; exit 1; }
cd "$build"
# Leak checking is off: LeakSanitizer's tracer itself crashes at exit here while the OpenMP and
# OpenBLAS worker threads of the backends are alive ("Tracer caught signal 11").
export ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --output-on-failure -R '^(unit_and_op_tests|python_streaming|python_hostile|python_synthetic_checkpoints|python_timm_families)$'
