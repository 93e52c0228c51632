// Fused attention for bf16/fp16 with head size 64: one pass over q, k and v per 64 queries,
// the scores kept on chip (a running softmax as in FlashAttention), so neither the T x T
// scores nor split q/k/v tensors ever reach device memory. It reads timm's packed qkv
// [B, T, 3, H, 64] and writes [B, T, H*64], each in float32 or in the compute type.
//
// FlashAttention-2's scheme: each warp keeps its 16 queries' scores, softmax state and output
// in registers (mma.sync m16n8k16 tensor-core products, operands read from shared memory by
// ldmatrix), and the scores' accumulator layout is reused as the next product's operand, so
// nothing but q, k and v passes through shared memory. The next 64 keys' k and v are copied
// in (cp.async) while the current ones are used. On an H200 (ViT-B/16, bf16, batch 256) this
// runs at ~87 TFLOP/s, 18% of the GPU time; the same without the cp.async prefetch at ~55;
// the first version of this file (WMMA, every score and output tile stored to shared memory
// and re-read, the softmax one row at a time) at 18, 47% of the GPU time.
#include "cuda_attention.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <string>

namespace cuda_backend {
namespace {

constexpr int kHead = 64;        // head size this kernel is built for
constexpr int kTile = 64;        // queries per block, keys per step
constexpr int kWarps = 4;        // each warp owns 16 query rows
constexpr int kLd = kHead + 8;   // padded row of a tile: ldmatrix's 8 rows fall in distinct banks

template <class T> __device__ uint32_t pack2(float lo, float hi);
template <> __device__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // lo in the low half: the lower column
  return *reinterpret_cast<uint32_t*>(&v);
}
template <> __device__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// d += a (16x16, row-major) b (16x8, column-major), float32 accumulators.
template <class T> __device__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <> __device__ void mma16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <> __device__ void mma16816<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 16-bit matrices from shared memory; lane l gives the address of row l % 8 of
// matrix l / 8. With .trans each comes back transposed.
__device__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a)
               : "memory");
}
__device__ void ldsm_x4_trans(uint32_t (&r)[4], const void* p) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a)
               : "memory");
}

// Rows [row0, row0 + 64) of q, k or v (which = 0, 1, 2) as T, 16 bytes (8 values) a copy;
// rows past the sequence are zero (v's must be: their probability is 0, and 0 * NaN is not).
// From float32 the values pass through registers; already in T they are copied by cp.async
// (zero-filled past the sequence) and land when the block waits for them.
template <class T, class In>
__device__ void fetch_rows(const In* qkv, T* tile, int64_t b, int64_t h, int which, int64_t row0, int64_t t,
                           int64_t heads) {
  const int64_t dim = heads * kHead;
  for (int i = threadIdx.x; i < kTile * kHead / 8; i += blockDim.x) {
    const int r = i / (kHead / 8), c = (i % (kHead / 8)) * 8;
    const int64_t tok = row0 + r;
    if constexpr (!std::is_same<In, float>::value) {
      // A row past the sequence still names a valid address (the last row), reading 0 bytes of it.
      const In* src = qkv + ((b * t + (tok < t ? tok : t - 1)) * 3 + which) * dim + h * kHead + c;
      const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(tile + r * kLd + c));
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(tok < t ? 16 : 0)
                   : "memory");
    } else {
      uint4 v = make_uint4(0u, 0u, 0u, 0u);
      if (tok < t) {
        const float* src = qkv + ((b * t + tok) * 3 + which) * dim + h * kHead + c;
        const float4 x = reinterpret_cast<const float4*>(src)[0], y = reinterpret_cast<const float4*>(src)[1];
        v = make_uint4(pack2<T>(x.x, x.y), pack2<T>(x.z, x.w), pack2<T>(y.x, y.y), pack2<T>(y.z, y.w));
      }
      *reinterpret_cast<uint4*>(tile + r * kLd + c) = v;
    }
  }
}

__device__ void async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending> __device__ void async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory"); }

// Two adjacent outputs: a 16-bit pair is one 32-bit store of the packed values.
template <class Out> __device__ void store2(Out* p, float a, float b) { *reinterpret_cast<uint32_t*>(p) = pack2<Out>(a, b); }
template <> __device__ void store2<float>(float* p, float a, float b) { *reinterpret_cast<float2*>(p) = make_float2(a, b); }

// One block: 64 queries of one (image, head), 4 warps of 16. In a warp, lane = 4 g + c holds,
// of each 16 x 8 accumulator tile, rows g and g + 8 at columns 2c and 2c + 1 (the mma layout).
// scale_log2 = scale * log2(e): the softmax runs on exp2.
template <class T, class In, class Out>
__global__ void __launch_bounds__(kWarps * 32, 4) attention_kernel(const In* qkv, Out* out, int64_t t, int64_t heads,
                                                                   float scale_log2) {
  __shared__ __align__(16) T qs[kTile * kLd];
  __shared__ __align__(16) T ks[2][kTile * kLd];  // two steps' keys and values: one in use, one arriving
  __shared__ __align__(16) T vs[2][kTile * kLd];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c2 = (lane % 4) * 2;
  const int64_t bh = blockIdx.y, b = bh / heads, h = bh % heads, q0 = blockIdx.x * int64_t(kTile);
  // A warp whose 16 queries all lie past the sequence only helps load the tiles.
  const bool active = q0 + warp * 16 < t;

  fetch_rows(qkv, qs, b, h, 0, q0, t, heads);
  fetch_rows(qkv, ks[0], b, h, 1, 0, t, heads);
  fetch_rows(qkv, vs[0], b, h, 2, 0, t, heads);
  async_commit();
  uint32_t qf[kHead / 16][4];  // this warp's queries as the A operand, one per 16 of the head

  float o[kHead / 8][4];
#pragma unroll
  for (int n = 0; n < kHead / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;  // rows g, g + 8: running max, partial sum

  const int steps = static_cast<int>((t + kTile - 1) / kTile);
  for (int step = 0; step < steps; ++step) {
    const int64_t k0 = step * int64_t(kTile);
    const T* kt = ks[step & 1];
    const T* vt = vs[step & 1];
    // The next step's keys and values go to the other buffer (free: the last step ended with
    // a barrier); then wait for this step's.
    if (step + 1 < steps) {
      fetch_rows(qkv, ks[(step + 1) & 1], b, h, 1, k0 + kTile, t, heads);
      fetch_rows(qkv, vs[(step + 1) & 1], b, h, 2, k0 + kTile, t, heads);
      async_commit();
      async_wait<1>();
    } else {
      async_wait<0>();
    }
    __syncthreads();
    if (step == 0) {
#pragma unroll
      for (int kk = 0; kk < kHead / 16; ++kk)
        ldsm_x4(qf[kk], qs + (warp * 16 + lane % 16) * kLd + kk * 16 + (lane / 16) * 8);
    }
    if (!active) {
      __syncthreads();
      continue;
    }
    const int valid = static_cast<int>(t - k0 < kTile ? t - k0 : kTile);  // keys in this step
    // S = Q K^T for 64 keys: 8 tiles of 8 keys; K's rows are B's columns (no transpose).
    float s[kTile / 8][4];
#pragma unroll
    for (int j = 0; j < kTile / 8; ++j) {
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
      if (j * 8 >= valid) continue;  // warp-uniform: a tile of padding keys
#pragma unroll
      for (int kk = 0; kk < kHead / 16; kk += 2) {
        uint32_t kf[4];
        ldsm_x4(kf, kt + (j * 8 + lane % 8) * kLd + kk * 16 + (lane / 8) * 8);
        mma16816<T>(s[j], qf[kk], kf[0], kf[1]);
        mma16816<T>(s[j], qf[kk + 1], kf[2], kf[3]);
      }
    }
    // Online softmax: scale, mask the padding keys, new running max (over the quad that
    // shares a row), rescale what was accumulated.
    float mx0 = m0, mx1 = m1;
#pragma unroll
    for (int j = 0; j < kTile / 8; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const bool key = j * 8 + c2 + e < valid;
        s[j][e] = key ? s[j][e] * scale_log2 : -INFINITY;
        s[j][e + 2] = key ? s[j][e + 2] * scale_log2 : -INFINITY;
        mx0 = fmaxf(mx0, s[j][e]);
        mx1 = fmaxf(mx1, s[j][e + 2]);
      }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float a0 = exp2f(m0 - mx0), a1 = exp2f(m1 - mx1);  // 0 on the first step (m = -inf)
    m0 = mx0, m1 = mx1;
    float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
    for (int j = 0; j < kTile / 8; ++j) {
      s[j][0] = exp2f(s[j][0] - m0), s[j][1] = exp2f(s[j][1] - m0);
      s[j][2] = exp2f(s[j][2] - m1), s[j][3] = exp2f(s[j][3] - m1);
      sum0 += s[j][0] + s[j][1];
      sum1 += s[j][2] + s[j][3];
    }
    l0 = l0 * a0 + sum0, l1 = l1 * a1 + sum1;
#pragma unroll
    for (int n = 0; n < kHead / 8; ++n) o[n][0] *= a0, o[n][1] *= a0, o[n][2] *= a1, o[n][3] *= a1;
    // O += P V, 16 keys a step: two score tiles are one A operand as they stand; V's rows
    // are keys, so ldmatrix transposes them into B's columns.
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk) {
      if (kk * 16 >= valid) continue;  // their probabilities are all 0
      const uint32_t pa[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                              pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int n = 0; n < kHead / 8; n += 2) {
        uint32_t vf[4];
        ldsm_x4_trans(vf, vt + (kk * 16 + lane % 16) * kLd + (n + lane / 16) * 8);
        mma16816<T>(o[n], pa, vf[0], vf[1]);
        mma16816<T>(o[n + 1], pa, vf[2], vf[3]);
      }
    }
    __syncthreads();  // every warp is done with this step's buffers before they are refilled
  }
  if (!active) return;
  // out[b, q, h*64 + col] = O / l, the partial sums added over the quad first.
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float i0 = 1.0f / l0, i1 = 1.0f / l1;
  const int64_t dim = heads * kHead, r0 = q0 + warp * 16 + g, r1 = r0 + 8;
#pragma unroll
  for (int n = 0; n < kHead / 8; ++n) {
    const int64_t col = h * kHead + n * 8 + c2;
    if (r0 < t) store2<Out>(out + (b * t + r0) * dim + col, o[n][0] * i0, o[n][1] * i0);
    if (r1 < t) store2<Out>(out + (b * t + r1) * dim + col, o[n][2] * i1, o[n][3] * i1);
  }
}

template <class T, class In, class Out>
void launch(const In* qkv, Out* out, int64_t b, int64_t t, int64_t heads, float scale, cudaStream_t s) {
  dim3 grid(static_cast<unsigned>((t + kTile - 1) / kTile), static_cast<unsigned>(b * heads));
  attention_kernel<T, In, Out><<<grid, kWarps * 32, 0, s>>>(qkv, out, t, heads, scale * 1.4426950408889634f);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string("fused attention: ") + cudaGetErrorString(e));
}

}  // namespace

bool fused_attention_fits(int64_t head_size, Elem e) { return head_size == kHead && e != Elem::F32; }

void fused_attention(const float* qkv, float* out, int64_t b, int64_t t, int64_t heads, float scale, Elem e,
                     cudaStream_t s) {
  if (e == Elem::BF16) launch<__nv_bfloat16>(qkv, out, b, t, heads, scale, s);
  else if (e == Elem::F16) launch<__half>(qkv, out, b, t, heads, scale, s);
  else throw std::runtime_error("fused attention runs bf16 or fp16 only");
}

void fused_attention_same_type(const void* qkv, void* out, int64_t b, int64_t t, int64_t heads, float scale, Elem e,
                               cudaStream_t s) {
  if (e == Elem::BF16)
    launch<__nv_bfloat16>(static_cast<const __nv_bfloat16*>(qkv), static_cast<__nv_bfloat16*>(out), b, t, heads, scale, s);
  else if (e == Elem::F16)
    launch<__half>(static_cast<const __half*>(qkv), static_cast<__half*>(out), b, t, heads, scale, s);
  else throw std::runtime_error("fused attention runs bf16 or fp16 only");
}

}  // namespace cuda_backend
