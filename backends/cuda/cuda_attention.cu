// Fused attention for bf16/fp16 with head size 64: one pass over q, k and v per 64 queries,
// the scores kept on chip (tensor cores through WMMA, a running softmax as in FlashAttention),
// so neither the T x T scores nor split q/k/v tensors ever reach device memory. It reads timm's
// packed qkv [B, T, 3, H, 64] (float32) and writes [B, T, H*64] (float32) directly.
#include "cuda_attention.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <stdexcept>
#include <type_traits>
#include <string>

namespace cuda_backend {
namespace {

using namespace nvcuda;

constexpr int kHead = 64;     // head size this kernel is built for
constexpr int kTile = 64;     // queries per block, keys per step
constexpr int kWarps = 4;     // each warp owns 16 query rows
constexpr int kLd = kHead + 8;    // padded row of a 16-bit tile (breaks bank conflicts)
constexpr int kLdf = kTile + 4;   // padded row of a float tile

template <class T> __device__ T to_elem(float v);
template <> __device__ __nv_bfloat16 to_elem<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __half to_elem<__half>(float v) { return __float2half(v); }

struct Shared {
  size_t q, k, v, s, p, o, stats, total;
};

template <class T>
__host__ __device__ Shared layout() {
  Shared l{};
  l.q = 0;
  l.k = l.q + kTile * kLd * sizeof(T);
  l.v = l.k + kTile * kLd * sizeof(T);
  l.s = l.v + kTile * kLd * sizeof(T);
  l.p = l.s + kWarps * 16 * kLdf * sizeof(float);
  l.o = l.p + kWarps * 16 * kLd * sizeof(T);
  l.stats = l.o + kWarps * 16 * kLdf * sizeof(float);
  l.total = l.stats + 2 * kTile * sizeof(float);
  return l;
}

// Rows [row0, row0 + 64) of one of q/k/v (which = 0, 1, 2) for batch b, head h, as T; rows
// past the sequence are zero.
// qkv as float32 (the graph's value) or already in T (inside a fused attention block).
template <class T, class In>
__device__ void load_tile(const In* qkv, T* tile, int64_t b, int64_t h, int which, int64_t row0, int64_t t,
                          int64_t heads) {
  const int64_t dim = heads * kHead;
  for (int i = threadIdx.x; i < kTile * kHead / 4; i += blockDim.x) {
    int r = i / (kHead / 4), c = (i % (kHead / 4)) * 4;
    int64_t tok = row0 + r;
    T* dst = tile + r * kLd + c;
    const In* src = qkv + ((b * t + tok) * 3 + which) * dim + h * kHead + c;
    if constexpr (std::is_same<In, float>::value) {
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (tok < t) v = *reinterpret_cast<const float4*>(src);
      dst[0] = to_elem<T>(v.x), dst[1] = to_elem<T>(v.y), dst[2] = to_elem<T>(v.z), dst[3] = to_elem<T>(v.w);
    } else {
      uint2 raw = make_uint2(0u, 0u);  // four 16-bit values
      if (tok < t) raw = *reinterpret_cast<const uint2*>(src);
      *reinterpret_cast<uint2*>(dst) = raw;
    }
  }
}

template <class Out> __device__ Out to_out(float v);
template <> __device__ float to_out<float>(float v) { return v; }
template <> __device__ __nv_bfloat16 to_out<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __half to_out<__half>(float v) { return __float2half(v); }

template <class T, class In, class Out>
__global__ void __launch_bounds__(kWarps * 32) flash_kernel(const In* qkv, Out* out, int64_t t, int64_t heads,
                                                            float scale) {
  extern __shared__ __align__(128) unsigned char smem[];
  const Shared L = layout<T>();
  T* qs = reinterpret_cast<T*>(smem + L.q);
  T* ks = reinterpret_cast<T*>(smem + L.k);
  T* vs = reinterpret_cast<T*>(smem + L.v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* ss = reinterpret_cast<float*>(smem + L.s) + warp * 16 * kLdf;
  T* ps = reinterpret_cast<T*>(smem + L.p) + warp * 16 * kLd;
  float* os = reinterpret_cast<float*>(smem + L.o) + warp * 16 * kLdf;
  float* row_max = reinterpret_cast<float*>(smem + L.stats) + warp * 16;
  float* row_sum = row_max + kTile;

  const int64_t bh = blockIdx.y, b = bh / heads, h = bh % heads, q0 = blockIdx.x * int64_t(kTile);
  load_tile(qkv, qs, b, h, 0, q0, t, heads);
  for (int i = lane; i < 16 * kLdf; i += 32) os[i] = 0.f;
  if (lane < 16) row_max[lane] = -INFINITY, row_sum[lane] = 0.f;

  for (int64_t k0 = 0; k0 < t; k0 += kTile) {
    __syncthreads();  // the previous step is done with ks/vs
    load_tile(qkv, ks, b, h, 1, k0, t, heads);
    load_tile(qkv, vs, b, h, 2, k0, t, heads);
    __syncthreads();
    // Scores of this warp's 16 queries against 64 keys.
    for (int j = 0; j < kTile / 16; ++j) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.f);
      for (int kk = 0; kk < kHead / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bk;
        wmma::load_matrix_sync(a, qs + (warp * 16) * kLd + kk * 16, kLd);
        wmma::load_matrix_sync(bk, ks + (j * 16) * kLd + kk * 16, kLd);
        wmma::mma_sync(acc, a, bk, acc);
      }
      wmma::store_matrix_sync(ss + j * 16, acc, kLdf, wmma::mem_row_major);
    }
    __syncwarp();
    // Running softmax, row by row: each lane holds two of the 64 columns.
    for (int r = 0; r < 16; ++r) {
      float s0 = k0 + lane < t ? ss[r * kLdf + lane] * scale : -INFINITY;
      float s1 = k0 + lane + 32 < t ? ss[r * kLdf + lane + 32] * scale : -INFINITY;
      float m = fmaxf(s0, s1);
      for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
      float m_old = row_max[r], m_new = fmaxf(m_old, m);
      float p0 = __expf(s0 - m_new), p1 = __expf(s1 - m_new);
      float sum = p0 + p1;
      for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      float alpha = __expf(m_old - m_new);  // 0 on the first step (m_old = -inf)
      ps[r * kLd + lane] = to_elem<T>(p0);
      ps[r * kLd + lane + 32] = to_elem<T>(p1);
      os[r * kLdf + lane] *= alpha;
      os[r * kLdf + lane + 32] *= alpha;
      __syncwarp();
      if (lane == 0) row_max[r] = m_new, row_sum[r] = row_sum[r] * alpha + sum;
      __syncwarp();
    }
    // O += P V for this warp's rows.
    for (int n = 0; n < kHead / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, os + n * 16, kLdf, wmma::mem_row_major);
      for (int kk = 0; kk < kTile / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> bv;
        wmma::load_matrix_sync(a, ps + kk * 16, kLd);
        wmma::load_matrix_sync(bv, vs + (kk * 16) * kLd + n * 16, kLd);
        wmma::mma_sync(acc, a, bv, acc);
      }
      wmma::store_matrix_sync(os + n * 16, acc, kLdf, wmma::mem_row_major);
    }
    __syncwarp();
  }
  // out[b, q, h*64 + c] = O / l
  const int64_t dim = heads * kHead;
  for (int r = 0; r < 16; ++r) {
    int64_t q = q0 + warp * 16 + r;
    if (q >= t) break;
    float inv = 1.0f / row_sum[r];
    Out* dst = out + (b * t + q) * dim + h * kHead;
    dst[lane] = to_out<Out>(os[r * kLdf + lane] * inv);
    dst[lane + 32] = to_out<Out>(os[r * kLdf + lane + 32] * inv);
  }
}

template <class T, class In, class Out>
void launch(const In* qkv, Out* out, int64_t b, int64_t t, int64_t heads, float scale, cudaStream_t s) {
  const size_t bytes = layout<T>().total;
  static const cudaError_t set = cudaFuncSetAttribute(flash_kernel<T, In, Out>,
                                                      cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (set != cudaSuccess) throw std::runtime_error(std::string("fused attention: ") + cudaGetErrorString(set));
  dim3 grid(static_cast<unsigned>((t + kTile - 1) / kTile), static_cast<unsigned>(b * heads));
  flash_kernel<T, In, Out><<<grid, kWarps * 32, bytes, s>>>(qkv, out, t, heads, scale);
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
