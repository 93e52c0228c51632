#!/usr/bin/env bash
# Sets up and builds vitbatch, then classifies the sample photos with the real ViT-Ti
# (../shared beside the checkout) and prints the CSV. truncated.jpg is a broken file on
# purpose: it gets an error row and a line on stderr, and vitbatch exits 1 for it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${VITBATCH_SHARED:-$root/../shared}"
"$root/scripts/setup.sh"
status=0
"$root/build/bin/vitbatch" classify \
  --model "$shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k" "$shared/images" || status=$?
if [ "$status" -eq 1 ]; then
  echo "demo: done; exit status 1 means some inputs were bad files (their rows carry the reason)" >&2
  exit 0
fi
exit "$status"
