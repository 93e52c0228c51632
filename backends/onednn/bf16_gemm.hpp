// bf16_gemm.hpp: vitbatch's own bf16 matmul on AVX512_BF16 (vdpbf16ps), bf16 activations
// times bf16 weights packed once, f32 accumulation, each tile 6 rows x 64 columns in 24
// accumulators, the epilogue (bias, GELU, residual, bf16 or f32 output) applied as the tile is
// stored.
//
// Why not oneDNN's: on Intel CPUs with AVX512_BF16 but no AMX, oneDNN 2.6's bf16 matmuls run
// slower than its fp32 ones (issue 11 measured ~150 against ~250 GFLOP/s on an Intel Xeon),
// while one vdpbf16ps does the multiply-adds of two fp32 fmas. On AMD's AVX512_BF16 and on
// AMX oneDNN's are fast, and stay the default there (onednn_backend.cpp: option bf16_gemm).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace onednn_backend {

// Whether this CPU has what bf16_gemm runs on (AVX512F, AVX512BW, AVX512VL, AVX512_BF16).
bool bf16_gemm_available();

// f32 to bf16, rounded to nearest even (as vcvtneps2bf16 and oneDNN's reorder round), NaN kept
// a quiet NaN.
uint16_t to_bf16(float v);

// Weights w[N, K] (f32, row-major as torch stores a linear's) rounded to bf16 and packed into
// panels of 64 columns, each [K / 2][64][2]: a k-pair of a panel's 64 columns is four vector
// loads. Columns past N are zero. K must be even.
struct Bf16Weights {
  Bf16Weights(const float* w, int64_t n, int64_t k);
  int64_t N, K, panels;
  std::unique_ptr<uint16_t[]> storage;  // panels * K * 64 values from the first 64-byte boundary
  uint16_t* data;
};

// y[m, n] = act(acc[m, n] + bias[n]) + residual[m, n], acc[m, n] = sum over k of x[m, k] *
// w[n, k] in f32; act is GELU (erf form, simd_gelu.hpp) or nothing. A null residual drops its
// term; y is f32, or bf16 where bf16_output.
struct Bf16Epilogue {
  const float* bias = nullptr;      // [N], required (zeros for a linear without one)
  const float* residual = nullptr;  // [M, N] or null
  bool gelu = false;
  bool bf16_output = false;
};

// x: M rows of K bf16, ldx values apart; y: [M, N]. Runs on the calling thread's OpenMP team
// (work split by blocks of rows and panels); each row's arithmetic is the same whatever M is
// and whichever thread runs it, so a row's result does not depend on its batch.
void bf16_gemm(const uint16_t* x, int64_t M, int64_t ldx, const Bf16Weights& w, const Bf16Epilogue& e, void* y);

}  // namespace onednn_backend
