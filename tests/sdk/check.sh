#!/bin/bash
# The plugin SDK from an install prefix: `cmake --install` the build tree into a temporary
# prefix, build the minimal test plugin as its own CMake project against it, and check that the
# installed vitbatch loads it (ABI 2) from the plugin directory it was installed to.
# usage: check.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd) source=$(cd "$2" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
test -f "$tmp/prefix/include/vitbatch/plugin/vit_plugin.h"
test -f "$tmp/prefix/lib/cmake/vitbatch/vitbatchConfig.cmake"
cmake -S "$source/tests/sdk" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
      -DPLUGIN_SOURCE="$source/tests/plugins/minimal_v2_plugin.cpp" -DCMAKE_INSTALL_PREFIX="$tmp/prefix" >/dev/null
cmake --build "$tmp/build" -j2 >/dev/null
cmake --install "$tmp/build" >/dev/null
out=$("$tmp/prefix/bin/vitbatch" backends)
echo "$out"
echo "$out" | grep -q "minimal_v2  2.0  ABI 2  $tmp/prefix/lib/vitbatch/libvitbatch_backend_minimal_v2.so" ||
  { echo "check.sh: the out-of-tree plugin was not loaded from the install prefix" >&2; exit 1; }
echo "$out" | grep -q "reference  2.0  ABI 2" || { echo "check.sh: the installed reference backend is missing" >&2; exit 1; }
echo "sdk: out-of-tree plugin built against $tmp/prefix and loaded"
