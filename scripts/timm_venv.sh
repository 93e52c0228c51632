#!/usr/bin/env bash
# Makes .venv-timm: timm 1.0.31 (the oracle of tests/python/test_timm_families.py and of
# scripts/gen_timm_table.py) on Debian's python3-torch, as the brief prescribes: a venv with
# the system site packages, timm and its small pure-Python dependencies pinned, no others.
# Prints the venv's python. Safe to run again.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-timm"
if ! "$venv/bin/python" -c "import timm, safetensors; assert timm.__version__ == '1.0.31'" >/dev/null 2>&1; then
  echo "timm_venv: creating $venv (timm 1.0.31 on Debian's torch)" >&2
  rm -rf "$venv"
  /usr/bin/python3 -m venv --system-site-packages "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps \
    timm==1.0.31 safetensors==0.8.0 huggingface_hub==2.4.0 pyyaml==6.0.1 >&2
fi
echo "$venv/bin/python"
