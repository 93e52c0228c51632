#!/bin/bash
# Packs what scripts/gpu_check.sh needs into .gpu/ (git-ignored): the binaries built here,
# the Debian libraries they link that a CUDA machine's image lacks, the real ViT-Ti and the
# photos from ../shared (which does not travel to the GPU machine), and the same packed as
# .gpu.tgz, which is what travels (the folder is over the device tool's 64 MiB: ICU's data,
# which libarchive's libxml2 pulls in, is 30 MB alone). Run after setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --build build -j2 >/dev/null
test -f build/bin/libvitbatch_backend_cuda.so || { echo "gpu_bundle: the cuda backend was not built (no CUDA toolkit?)" >&2; exit 1; }
rm -rf .gpu
mkdir -p .gpu/bin .gpu/lib .gpu/model .gpu/images
cp build/bin/vitbatch build/bin/vitbatch_unit_tests build/bin/libvitbatch_backend_cuda.so \
   build/bin/libvitbatch_backend_reference.so .gpu/bin/
# Everything they link from the system but the C/C++ runtime (the GPU machine has its own).
ldd build/bin/vitbatch build/bin/vitbatch_unit_tests build/bin/libvitbatch_backend_reference.so |
  awk '/=> \//{print $3}' | sort -u |
  grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|ld-linux-x86-64)\.so' |
  while read -r lib; do cp -L "$lib" .gpu/lib/; done
cp ../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k/{model.safetensors,config.json} .gpu/model/
cp ../shared/images/* .gpu/images/
cp ../shared/labels/imagenet1k.txt .gpu/ 2>/dev/null || true
tar -czf .gpu.tgz .gpu
du -sh .gpu .gpu.tgz
