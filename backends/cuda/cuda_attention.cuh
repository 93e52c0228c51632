// cuda_attention.cuh: fused multi-head attention (bf16/fp16, head size 64) on packed qkv.
#pragma once

#include "cuda_kernels.cuh"

namespace cuda_backend {

// Whether fused_attention serves this head size and precision (else: the batched-GEMM path).
bool fused_attention_fits(int64_t head_size, Elem e);

// qkv [b, t, 3, heads, 64] float32 -> out [b, t, heads*64] float32, scores scaled by `scale`,
// products in e (bf16 or fp16) with float32 accumulation and softmax.
void fused_attention(const float* qkv, float* out, int64_t b, int64_t t, int64_t heads, float scale, Elem e,
                     cudaStream_t s);

// The same with qkv and out in e itself (inside a fused attention block, where no float32
// copy of either is ever written).
void fused_attention_same_type(const void* qkv, void* out, int64_t b, int64_t t, int64_t heads, float scale, Elem e,
                               cudaStream_t s);

}  // namespace cuda_backend
