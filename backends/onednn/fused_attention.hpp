// fused_attention.hpp: multi-head attention as one pass per (image, head, block of 16
// queries), in fp32: the block's scores against every key, their softmax and the mix of V
// stay in a few KiB of the thread's own scratch (the full [T, T] score matrix is never
// written). Replaces three oneDNN primitives per image, whose tiny per-head products and
// softmax cost more in calls and thread barriers than in arithmetic on ViT's sizes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace onednn_backend {

// Queries per block: one 16-float vector, so the block's scores are [T][16] (key-major) and
// the softmax over keys is elementwise across vectors, never a horizontal reduction.
constexpr int64_t kQueryBlock = 16;

struct AttentionShape {
  int64_t T = 0;       // tokens
  int64_t D = 0;       // model width; qkv rows are [q | k | v], 3 * D floats
  int64_t heads = 0;   // D / heads = head size
  float scale = 1.0f;  // on q . k, before the softmax
};

// Floats of scratch one thread needs for attention_block on this shape.
size_t attention_block_floats(const AttentionShape& s);

// out[i, h*hd + e] for the queries [q0, q0 + 16) of head h of one image:
// softmax_j(scale * q_i . k_j + bias[h, i, j]) @ v. qkv: the image's [T, 3D]; bias: [heads, T,
// T] or null; out: the image's [T, D]; work: attention_block_floats(s) floats.
void attention_block(const AttentionShape& s, const float* qkv, const float* bias, int64_t h, int64_t q0,
                     float* out, float* work);

// The same for the bf16 and int8 precisions where the CPU has AVX512_BF16 (else false, and
// attention_block serves): q . k and p @ v as bf16 pairs on vdpbf16ps with f32 sums, the
// softmax in f32, the keys in the vector lanes. One call covers query blocks [block0, block1)
// of head h, so that the head's K and V are converted to bf16 (K transposed) once for all.
bool has_bf16_attention();
size_t attention_head_bf16_floats(const AttentionShape& s);
void attention_head_bf16(const AttentionShape& s, const float* qkv, const float* bias, int64_t h, int64_t block0,
                         int64_t block1, float* out, float* work);

}  // namespace onednn_backend
