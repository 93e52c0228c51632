#!/usr/bin/env bash
# Runs bench/side_by_side.py with ONNX Runtime from PyPI in bench/.venv (made once, on top of
# Debian's python3-torch), after building vitbatch.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/../scripts/setup.sh"
if [ ! -x "$here/.venv/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$here/.venv"
  "$here/.venv/bin/pip" install -q onnxruntime
fi
exec "$here/.venv/bin/python" "$here/side_by_side.py" "$@"
