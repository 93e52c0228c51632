#!/usr/bin/env bash
# Runs bench/side_by_side.py with ONNX Runtime from PyPI in bench/.venv (made once, on top of
# Debian's python3-torch), after building vitbatch; with --families, bench/families.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/../scripts/setup.sh"
# --families: the ViT variants against plain ViT of the same size (bench/families.py, in the
# timm venv: timm builds both).
if [ "${1:-}" = "--families" ]; then
  shift
  exec "$("$here/../scripts/timm_venv.sh")" "$here/families.py" "$@"
fi
if [ ! -x "$here/.venv/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$here/.venv"
  "$here/.venv/bin/pip" install -q onnxruntime
fi
exec "$here/.venv/bin/python" "$here/side_by_side.py" "$@"
