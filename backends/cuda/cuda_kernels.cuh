// cuda_kernels.cuh: the CUDA backend's own kernels (everything that is not a GEMM), as host
// functions that launch on a stream. Activations crossing the graph are float32; `Elem`
// says the type a kernel writes for the GEMM that reads it next (fp32, bf16 or fp16).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace cuda_backend {

enum class Elem { F32, BF16, F16 };
inline size_t elem_size(Elem e) { return e == Elem::F32 ? 4 : 2; }

// x -> y elementwise conversion of n floats (y in `to`).
void convert(const float* x, void* y, int64_t n, Elem to, cudaStream_t s);

// [N, C, H, W] -> [N, (H/p)*(W/p), C*p*p] (vit_ops.def's patchify).
void patchify(const float* x, float* y, int64_t n, int64_t c, int64_t h, int64_t w, int64_t p, cudaStream_t s);

// y = a + b, b repeating every nb elements (b of the same shape, or broadcast over dim 0).
void add(const float* a, const float* b, float* y, int64_t n, int64_t nb, cudaStream_t s);
void scale(const float* x, float* y, int64_t n, float factor, cudaStream_t s);
// Exact GELU (erf), in place on `x` of type e.
void gelu(void* x, int64_t n, Elem e, cudaStream_t s);
void gelu_f32(const float* x, float* y, int64_t n, cudaStream_t s);

// Over the last axis of rows x d.
void layer_norm(const float* x, const float* gamma, const float* beta, void* y, int64_t rows, int64_t d, float eps,
                Elem to, cudaStream_t s);
void softmax(const float* x, void* y, int64_t rows, int64_t d, Elem to, cudaStream_t s);

// Copy a [outer, rows_in, inner] block's rows [start, start+rows_out) (slice and concat).
// src_outer_mod: the source outer index is o % src_outer_mod (broadcast over dim 0).
void copy_rows(const float* x, float* y, int64_t outer, int64_t src_outer_mod, int64_t rows_in, int64_t start,
               int64_t rows_out, int64_t dst_rows, int64_t dst_start, int64_t inner, cudaStream_t s);

// out dim i = in dim perm[i], rank <= 8.
void permute(const float* x, float* y, int rank, const int64_t* in_shape, const int64_t* perm, cudaStream_t s);

// Attention's heads: qkv [B, T, 3, H, hd] (float) -> q, k, v each [B*H, T, hd] in `to`,
// one after the other in `out`; and back: o [B, H, T, hd] -> y [B, T, H*hd].
void split_heads(const float* qkv, void* out, int64_t b, int64_t t, int64_t h, int64_t hd, Elem to, cudaStream_t s);
void merge_heads(const float* o, float* y, int64_t b, int64_t t, int64_t h, int64_t hd, cudaStream_t s);

}  // namespace cuda_backend
