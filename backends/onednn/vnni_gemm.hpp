// vnni_gemm.hpp: vitbatch's own int8 matmul on AVX512_VNNI (vpdpbusd), u8 activations times
// s8 weights packed once, each tile 6 rows x 64 columns in 24 accumulators, the dequantising
// epilogue (scales, zero-point terms, bias, residual) applied as the tile is stored.
//
// Why not oneDNN's: on the AMD EPYC it was measured on, oneDNN 2.6's brgemm int8 matmuls ran
// ViT's linears (197 rows) at 239-356 GOP/s on one core (`vitbatch bench --gemm`, input
// quantisation included), 52%-77% of what vpdpbusd itself sustains there (460 GOP/s: one
// 512-bit instruction a cycle); this kernel's inner loop, four weight loads and six broadcasts
// for 24 vpdpbusd, ran them at 320-392. In the whole model the gain is smaller (BENCHMARKS.md,
// "int8 on a VNNI kernel of its own").
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace onednn_backend {

// Whether this CPU has what vnni_gemm runs on (AVX512F, AVX512BW, AVX512_VNNI).
bool vnni_gemm_available();

// Weights w[N, K] (s8, row-major as torch stores a linear's), packed into panels of 64
// columns, each [K / 4][64][4]: a k-quad of a panel's 64 columns is four vector loads.
// Columns past N are zero. K must be a multiple of 4.
struct VnniWeights {
  VnniWeights(const int8_t* w, int64_t n, int64_t k);
  int64_t N, K, panels;
  std::unique_ptr<int8_t[]> storage;  // panels * K * 64 bytes from the first 64-byte boundary
  int8_t* data;
};

// y[m, n] = row_scale[m] * (col_scale[n] * acc[m, n]) + (row_offset[m] * col_weight[n] +
// col_add[n]) + residual[m, n], acc[m, n] = sum over k of x[m, k] * w[n, k] (exact, int32).
// The row terms (row_scale, row_offset, col_weight) come all together or not at all (without
// them, y = col_scale[n] * acc[m, n] + col_add[n]); a null residual drops its term.
struct VnniEpilogue {
  const float* col_scale = nullptr;   // [N]
  const float* col_add = nullptr;     // [N]
  const float* row_scale = nullptr;   // [M] or null
  const float* row_offset = nullptr;  // [M] or null
  const float* col_weight = nullptr;  // [N], read where row_offset is set
  const float* residual = nullptr;    // [M, N] or null
};

// x: M rows of K u8, ldx bytes apart; y: [M, N] f32. Runs on the calling thread's OpenMP
// team (work split by blocks of rows and panels); each row's arithmetic is the same whatever
// M is and whichever thread runs it, so a row's result does not depend on its batch.
void vnni_gemm(const uint8_t* x, int64_t M, int64_t ldx, const VnniWeights& w, const VnniEpilogue& e, float* y);

}  // namespace onednn_backend
