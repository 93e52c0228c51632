// simd_lanes.hpp: the mask of a vector's first lanes, for the tails of the onednn backend's
// AVX-512 kernels (fused_attention.cpp, vnni_gemm.cpp).
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace onednn_backend {

// Lanes [0, n) of a 16-lane vector: none for n <= 0, all for n >= 16.
inline __mmask16 first_lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

}  // namespace onednn_backend
