#!/usr/bin/env bash
# Installs what vitbatch needs from Debian's packages (if missing) and builds it in build/.
# Safe to run again: it only installs what is missing and rebuilds what changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  build-essential cmake pkg-config
  xtensor-dev libxtensor-blas-dev libopenblas-dev libcli11-dev libyaml-cpp-dev doctest-dev nlohmann-json3-dev
  libjpeg62-turbo-dev libturbojpeg0-dev libpng-dev libwebp-dev libtiff-dev libgif-dev libdnnl-dev ocl-icd-opencl-dev
  libarchive-dev
  # the independent reference for the parity tests
  python3 python3-numpy python3-pil python3-torch python3-torchvision python3-venv
  # tools that make test images Pillow cannot write (planar/tiled TIFF, arithmetic-coded JPEG)
  libtiff-tools libjpeg-turbo-progs
)

bash "$root/scripts/install_packages.sh" "${packages[@]}"

cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >&2
cmake --build "$root/build" -j2 >&2
