#!/usr/bin/env bash
# Sets up and builds vitbatch, then runs every test: doctest unit and op tests, and the
# parity tests against Pillow/torchvision/PyTorch on the real model and photos (../shared).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${VITBATCH_SHARED:-$root/../shared}"
"$root/scripts/setup.sh"
# Only the tests need these: a one-node Slurm cluster for the job-array test, and a browser
# for the HTML reports.
bash "$root/scripts/install_packages.sh" slurm-wlm munge chromium
[ -d "$shared/models" ] || { echo "test: no shared/ folder at $shared (set VITBATCH_SHARED)" >&2; exit 1; }
timm_python="$("$root/scripts/timm_venv.sh")"
cmake -S "$root" -B "$root/build" -DVITBATCH_SHARED_DIR="$shared" -DVITBATCH_TIMM_PYTHON="$timm_python" >/dev/null
cd "$root/build"
ctest --output-on-failure
