#!/usr/bin/env bash
# Submits a sharded classify run to Slurm: a job array of N classify_array.sbatch tasks and a
# merge.sbatch job that runs after all of them, writing OUTDIR/predictions.csv.
#
#   scripts/slurm/submit.sh -n 16 [-c CPUS_PER_TASK] [-s "more sbatch options"] OUTDIR \
#       --model MODEL [classify options] -- INPUT...
#
# The inputs come after "--" so the merge can check that every one has its row. Prints the
# two job ids: "ARRAY_ID MERGE_ID".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tasks=4 cpus="" extra=""
while getopts "n:c:s:" opt; do
  case "$opt" in
    n) tasks="$OPTARG" ;;
    c) cpus="$OPTARG" ;;
    s) extra="$OPTARG" ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "$#" -ge 1 ] || { echo "usage: submit.sh -n N [-c CPUS] [-s SBATCH_OPTS] OUTDIR CLASSIFY_OPTIONS... -- INPUT..." >&2; exit 2; }
outdir="$1"
shift
options=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do options+=("$1"); shift; done
[ "$#" -gt 0 ] || { echo "submit.sh: put the inputs after --" >&2; exit 2; }
shift
[ "$#" -gt 0 ] || { echo "submit.sh: no inputs after --" >&2; exit 2; }
mkdir -p "$outdir/logs"
# shellcheck disable=SC2206 # extra is a list of sbatch options, split on purpose
sbatch_opts=(--parsable ${extra})
[ -n "$cpus" ] && sbatch_opts+=(--cpus-per-task "$cpus")
array=$(sbatch "${sbatch_opts[@]}" --array="0-$((tasks - 1))" --output="$outdir/logs/classify-%A_%a.log" \
  "$here/classify_array.sbatch" "$outdir" "${options[@]}" "$@")
array="${array%%;*}"
merge=$(sbatch "${sbatch_opts[@]}" --dependency="afterany:$array" --output="$outdir/logs/merge-%j.log" \
  "$here/merge.sbatch" "$outdir" "$tasks" "$@")
echo "$array ${merge%%;*}"
