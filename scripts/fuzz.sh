#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, ASan+UBSan) in build-fuzz/ and fuzzes each for
# SECONDS (default 30), JOBS harnesses at a time (default 1), all of them or the HARNESS
# names given (fuzz_HARNESS in build-fuzz/bin), from the seed corpora
# (tests/fuzz/make_seeds.py + tests/fuzz/seeds). Prints, per harness, executions, coverage
# and corpus size; fails on any crash, sanitizer report, timeout (10 s an input) or input
# that needs more than 2 GB. Crashing inputs are kept in build-fuzz/artifacts/.
#   bash scripts/fuzz.sh [SECONDS] [JOBS] [HARNESS...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-30}"
jobs="${2:-1}"
build="$root/build-fuzz"
harnesses=(safetensors yaml_config config_json run_record resume_reader stdin_paths archive
           decode_jpeg decode_png decode_webp decode_tiff decode_gif decode_bmp)
[ "$#" -gt 2 ] && harnesses=("${@:3}")
bash "$root/scripts/install_packages.sh" clang libclang-rt-14-dev
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DVITBATCH_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2 --target "${harnesses[@]/#/fuzz_}" >"$build/build.log" 2>&1 ||
  { tail -n 60 "$build/build.log" >&2; exit 1; }
rm -rf "$build/seeds" && /usr/bin/python3 "$root/tests/fuzz/make_seeds.py" "$build/seeds"
rm -rf "$build/artifacts" && mkdir -p "$build/artifacts" "$build/logs"

run_one() {
  local h="$1" corpus="$build/corpus/$1"
  mkdir -p "$corpus"
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$build/bin/fuzz_$h" "$corpus" "$build/seeds/$h" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$build/artifacts/$h-" \
    >"$build/logs/$h.log" 2>&1
}

failed=0
pids=()
names=()
for h in "${harnesses[@]}"; do
  run_one "$h" &
  pids+=($!)
  names+=("$h")
  if [ "${#pids[@]}" -ge "$jobs" ]; then
    if ! wait "${pids[0]}"; then echo "fuzz: ${names[0]} FAILED: see $build/logs/${names[0]}.log" >&2; failed=1; fi
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  fi
done
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then echo "fuzz: ${names[$i]} FAILED: see $build/logs/${names[$i]}.log" >&2; failed=1; fi
done
printf '%-16s %12s %8s %8s %10s\n' harness executions cov ft corpus
for h in "${harnesses[@]}"; do
  log="$build/logs/$h.log"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  last=$(grep -E '^#[0-9]+' "$log" | tail -n1 || true)  # none when it crashed at once
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
  printf '%-16s %12s %8s %8s %10s\n' "$h" "$execs" "${cov:-?}" "${ft:-?}" "${corp:-?}"
done
if [ "$failed" -ne 0 ]; then
  # CI keeps only what is printed: the report itself (sanitizer or libFuzzer, with its stack)
  # and the input as base64, so a failure found there can be replayed here.
  for h in "${harnesses[@]}"; do
    log="$build/logs/$h.log"
    first=$(grep -nE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|deadly signal' "$log" |
            head -n 1 | cut -d: -f1 || true)
    if [ -n "$first" ]; then
      echo "fuzz: $h report:" >&2
      tail -n +"$first" "$log" | head -n 60 >&2
    fi
  done
  for f in "$build"/artifacts/*; do
    [ -e "$f" ] || continue
    echo "fuzz: crashing input kept: $f ($(stat -c %s "$f") bytes), base64:" >&2
    head -c 4096 "$f" | base64 -w 0 >&2
    echo >&2
  done
  exit 1
fi
echo "fuzz: ${#harnesses[@]} harnesses, ${seconds} s each: no crash, leak, hang or sanitizer report"
