#!/usr/bin/env bash
# Builds vitbatch and the timm venv, then runs bench/decode_overlap.py: classify on JPEG
# photos against the model alone (BENCHMARKS.md, "Classifying files").
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/../scripts/setup.sh"
timm_python="$("$here/../scripts/timm_venv.sh")"
exec "$timm_python" "$here/decode_overlap.py" "$@"
