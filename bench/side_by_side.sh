#!/usr/bin/env bash
# Builds vitbatch, makes the two venvs the benchmark needs, then runs bench/side_by_side.py:
# .venv-timm (timm on Debian's torch: PyTorch itself, the models, the ONNX export) and
# bench/.venv-peers (ONNX Runtime, OpenVINO, NNCF from PyPI, pinned in
# bench/peers-requirements.txt, without Debian's site packages). With --families,
# bench/families.py instead; with --bf16-kernels, bench/bf16_kernels.py (vitbatch alone).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/../scripts/setup.sh"
timm_python="$("$here/../scripts/timm_venv.sh")"
if [ "${1:-}" = "--families" ]; then
  shift
  exec "$timm_python" "$here/families.py" "$@"
fi
if [ "${1:-}" = "--bf16-kernels" ]; then
  shift
  exec "$timm_python" "$here/bf16_kernels.py" "$@"
fi
peers="$here/.venv-peers"
if ! "$peers/bin/python" -c "import onnxruntime, openvino, nncf" >/dev/null 2>&1 ||
   ! cmp -s "$here/peers-requirements.txt" "$peers/requirements.installed"; then
  echo "side_by_side: creating $peers (ONNX Runtime, OpenVINO, NNCF)" >&2
  rm -rf "$peers"
  /usr/bin/python3 -m venv "$peers"
  "$peers/bin/pip" install -q --disable-pip-version-check -r "$here/peers-requirements.txt" >&2
  cp "$here/peers-requirements.txt" "$peers/requirements.installed"
fi
exec "$timm_python" "$here/side_by_side.py" --peers-python "$peers/bin/python" "$@"
