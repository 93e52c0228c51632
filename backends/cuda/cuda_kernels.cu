// The CUDA backend's elementwise, normalisation and layout kernels. Plain grid-stride loops
// and one warp per row: these are memory-bound, and the GEMMs (cuBLASLt) dominate.
#include "cuda_kernels.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stdexcept>
#include <string>

namespace cuda_backend {
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(b < 65535 * 8 ? (b > 0 ? b : 1) : 65535 * 8);
}

void check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

template <class T> __device__ T from_float(float v);
template <> __device__ float from_float<float>(float v) { return v; }
template <> __device__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __half from_float<__half>(float v) { return __float2half(v); }

__device__ float to_float(float v) { return v; }
__device__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ float to_float(__half v) { return __half2float(v); }

#define GRID_STRIDE(i, n) for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)

template <class T>
__global__ void convert_kernel(const float* x, T* y, int64_t n) {
  GRID_STRIDE(i, n) y[i] = from_float<T>(x[i]);
}

// I: the index type. 32-bit where the tensor allows: the six divisions per element are most
// of this kernel's time in 64 bits (0.65 ms of ViT-Ti's 10 ms batch of 256 on an H200).
template <class I>
__global__ void patchify_kernel(const float* x, float* y, I n, I c, I h, I w, I p) {
  const I gw = w / p, grid = (h / p) * gw, row = c * p * p, total = n * grid * row;
  for (I i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += blockDim.x * gridDim.x) {
    I e = i % row, g = (i / row) % grid, b = i / (row * grid);
    I ch = e / (p * p), ky = (e / p) % p, kx = e % p;
    I yy = (g / gw) * p + ky, xx = (g % gw) * p + kx;
    y[i] = x[((b * c + ch) * h + yy) * w + xx];
  }
}

__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n, int64_t nb) {
  GRID_STRIDE(i, n) y[i] = a[i] + b[i % nb];
}

__global__ void scale_kernel(const float* x, float* y, int64_t n, float f) {
  GRID_STRIDE(i, n) y[i] = x[i] * f;
}

__device__ float gelu_erf(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }

template <class T>
__global__ void gelu_kernel(T* x, int64_t n) {
  GRID_STRIDE(i, n) x[i] = from_float<T>(gelu_erf(to_float(x[i])));
}

// The same, 16 bytes a load and store (8 bf16/fp16 values): the hidden layer is the largest
// tensor of a block, and element-wise 2-byte accesses left this pass at ~1.3 TB/s on an H200.
template <class T>
__global__ void gelu_vec_kernel(uint4* x, int64_t n8) {
  GRID_STRIDE(i, n8) {
    union {
      uint4 raw;
      T e[8];
    } v;
    v.raw = x[i];
#pragma unroll
    for (int k = 0; k < 8; ++k) v.e[k] = from_float<T>(gelu_erf(to_float(v.e[k])));
    x[i] = v.raw;
  }
}

__global__ void gelu_f32_kernel(const float* x, float* y, int64_t n) {
  GRID_STRIDE(i, n) y[i] = gelu_erf(x[i]);
}

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// One warp per row; two passes over the row (mean, then the centred variance) as the
// reference does, so fp32 agrees to rounding.
template <class T>
__global__ void layer_norm_kernel(const float* x, const float* g, const float* b, T* y, int64_t rows, int64_t d,
                                  float eps) {
  int64_t row = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float* xr = x + row * d;
  float s = 0.0f;
  for (int64_t i = lane; i < d; i += 32) s += xr[i];
  float mean = warp_sum(s) / static_cast<float>(d);
  float v = 0.0f;
  for (int64_t i = lane; i < d; i += 32) {
    float c = xr[i] - mean;
    v += c * c;
  }
  float rstd = rsqrtf(warp_sum(v) / static_cast<float>(d) + eps);
  T* yr = y + row * d;
  for (int64_t i = lane; i < d; i += 32) yr[i] = from_float<T>((xr[i] - mean) * rstd * g[i] + b[i]);
}

// The same with the row held in registers (kPer values a lane, d <= 32 kPer): x is read once
// instead of three times; the sums run in the same order, so the output is bit-identical.
template <class T, int kPer>
__global__ void layer_norm_reg_kernel(const float* x, const float* g, const float* b, T* y, int64_t rows, int d,
                                      float eps) {
  int64_t row = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float* xr = x + row * d;
  float v[kPer];
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < kPer; ++k) {
    const int i = lane + 32 * k;
    v[k] = i < d ? xr[i] : 0.0f;
    s += v[k];
  }
  const float mean = warp_sum(s) / static_cast<float>(d);
  float q = 0.0f;
#pragma unroll
  for (int k = 0; k < kPer; ++k)
    if (lane + 32 * k < d) {
      const float c = v[k] - mean;
      q += c * c;
    }
  const float rstd = rsqrtf(warp_sum(q) / static_cast<float>(d) + eps);
  T* yr = y + row * d;
#pragma unroll
  for (int k = 0; k < kPer; ++k) {
    const int i = lane + 32 * k;
    if (i < d) yr[i] = from_float<T>((v[k] - mean) * rstd * g[i] + b[i]);
  }
}

template <class T>
__global__ void softmax_kernel(const float* x, T* y, int64_t rows, int64_t d) {
  int64_t row = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float* xr = x + row * d;
  float m = -INFINITY;
  for (int64_t i = lane; i < d; i += 32) m = fmaxf(m, xr[i]);
  m = warp_max(m);
  float s = 0.0f;
  for (int64_t i = lane; i < d; i += 32) s += __expf(xr[i] - m);
  float inv = 1.0f / warp_sum(s);
  T* yr = y + row * d;
  for (int64_t i = lane; i < d; i += 32) yr[i] = from_float<T>(__expf(xr[i] - m) * inv);
}

__global__ void copy_rows_kernel(const float* x, float* y, int64_t outer, int64_t mod, int64_t rows_in, int64_t start,
                                 int64_t rows_out, int64_t dst_rows, int64_t dst_start, int64_t inner) {
  int64_t total = outer * rows_out * inner;
  GRID_STRIDE(i, total) {
    int64_t e = i % inner, r = (i / inner) % rows_out, o = i / (inner * rows_out);
    y[(o * dst_rows + dst_start + r) * inner + e] = x[((o % mod) * rows_in + start + r) * inner + e];
  }
}

struct Dims {
  int rank;
  int64_t out_shape[8];
  int64_t in_stride_for_out[8];
};

__global__ void permute_kernel(const float* x, float* y, int64_t n, Dims d) {
  GRID_STRIDE(i, n) {
    int64_t rest = i, src = 0;
    for (int k = d.rank - 1; k >= 0; --k) {
      src += (rest % d.out_shape[k]) * d.in_stride_for_out[k];
      rest /= d.out_shape[k];
    }
    y[i] = x[src];
  }
}

template <class T>
__global__ void split_heads_kernel(const float* qkv, T* out, int64_t b, int64_t t, int64_t h, int64_t hd) {
  const int64_t dim = h * hd, total = b * t * 3 * dim, part = b * h * t * hd;
  GRID_STRIDE(i, total) {
    // i walks qkv in order: [b][t][which][head][e]
    int64_t e = i % hd, head = (i / hd) % h, which = (i / dim) % 3, tok = (i / (3 * dim)) % t, bb = i / (3 * dim * t);
    out[which * part + ((bb * h + head) * t + tok) * hd + e] = from_float<T>(qkv[i]);
  }
}

__global__ void merge_heads_kernel(const float* o, float* y, int64_t b, int64_t t, int64_t h, int64_t hd) {
  const int64_t total = b * t * h * hd;
  GRID_STRIDE(i, total) {
    // i walks y in order: [b][t][head][e]
    int64_t e = i % hd, head = (i / hd) % h, tok = (i / (hd * h)) % t, bb = i / (hd * h * t);
    y[i] = o[((bb * h + head) * t + tok) * hd + e];
  }
}

int row_blocks(int64_t rows) { return static_cast<int>((rows + (kThreads / 32) - 1) / (kThreads / 32)); }

}  // namespace

void convert(const float* x, void* y, int64_t n, Elem to, cudaStream_t s) {
  if (to == Elem::BF16) convert_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, static_cast<__nv_bfloat16*>(y), n);
  else if (to == Elem::F16) convert_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, static_cast<__half*>(y), n);
  else convert_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, static_cast<float*>(y), n);
  check_launch("convert");
}

void patchify(const float* x, float* y, int64_t n, int64_t c, int64_t h, int64_t w, int64_t p, cudaStream_t s) {
  const int64_t total = n * c * h * w;
  if (total + static_cast<int64_t>(kThreads) * 65535 * 8 < (int64_t{1} << 31))  // i never overflows
    patchify_kernel<int32_t><<<blocks_for(total), kThreads, 0, s>>>(x, y, static_cast<int32_t>(n), static_cast<int32_t>(c),
                                                                   static_cast<int32_t>(h), static_cast<int32_t>(w),
                                                                   static_cast<int32_t>(p));
  else
    patchify_kernel<int64_t><<<blocks_for(total), kThreads, 0, s>>>(x, y, n, c, h, w, p);
  check_launch("patchify");
}

void add(const float* a, const float* b, float* y, int64_t n, int64_t nb, cudaStream_t s) {
  add_kernel<<<blocks_for(n), kThreads, 0, s>>>(a, b, y, n, nb);
  check_launch("add");
}

void scale(const float* x, float* y, int64_t n, float factor, cudaStream_t s) {
  scale_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, y, n, factor);
  check_launch("scale");
}

void gelu(void* x, int64_t n, Elem e, cudaStream_t s) {
  if (e != Elem::F32 && n % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0) {
    if (e == Elem::BF16) gelu_vec_kernel<__nv_bfloat16><<<blocks_for(n / 8), kThreads, 0, s>>>(static_cast<uint4*>(x), n / 8);
    else gelu_vec_kernel<__half><<<blocks_for(n / 8), kThreads, 0, s>>>(static_cast<uint4*>(x), n / 8);
  } else if (e == Elem::BF16) gelu_kernel<<<blocks_for(n), kThreads, 0, s>>>(static_cast<__nv_bfloat16*>(x), n);
  else if (e == Elem::F16) gelu_kernel<<<blocks_for(n), kThreads, 0, s>>>(static_cast<__half*>(x), n);
  else gelu_kernel<<<blocks_for(n), kThreads, 0, s>>>(static_cast<float*>(x), n);
  check_launch("gelu");
}

void gelu_f32(const float* x, float* y, int64_t n, cudaStream_t s) {
  gelu_f32_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, y, n);
  check_launch("gelu");
}

template <class T>
void layer_norm_in_registers(const float* x, const float* gamma, const float* beta, T* y, int64_t rows, int64_t d,
                             float eps, cudaStream_t s) {
  const int n = static_cast<int>(d);
  if (d <= 256) layer_norm_reg_kernel<T, 8><<<row_blocks(rows), kThreads, 0, s>>>(x, gamma, beta, y, rows, n, eps);
  else if (d <= 512) layer_norm_reg_kernel<T, 16><<<row_blocks(rows), kThreads, 0, s>>>(x, gamma, beta, y, rows, n, eps);
  else layer_norm_reg_kernel<T, 32><<<row_blocks(rows), kThreads, 0, s>>>(x, gamma, beta, y, rows, n, eps);
}

void layer_norm(const float* x, const float* gamma, const float* beta, void* y, int64_t rows, int64_t d, float eps,
                Elem to, cudaStream_t s) {
  if (d <= 1024) {  // ViT widths up to ViT-L's
    if (to == Elem::BF16) layer_norm_in_registers(x, gamma, beta, static_cast<__nv_bfloat16*>(y), rows, d, eps, s);
    else if (to == Elem::F16) layer_norm_in_registers(x, gamma, beta, static_cast<__half*>(y), rows, d, eps, s);
    else layer_norm_in_registers(x, gamma, beta, static_cast<float*>(y), rows, d, eps, s);
  } else if (to == Elem::BF16)
    layer_norm_kernel<<<row_blocks(rows), kThreads, 0, s>>>(x, gamma, beta, static_cast<__nv_bfloat16*>(y), rows, d, eps);
  else if (to == Elem::F16)
    layer_norm_kernel<<<row_blocks(rows), kThreads, 0, s>>>(x, gamma, beta, static_cast<__half*>(y), rows, d, eps);
  else
    layer_norm_kernel<<<row_blocks(rows), kThreads, 0, s>>>(x, gamma, beta, static_cast<float*>(y), rows, d, eps);
  check_launch("layer_norm");
}

void softmax(const float* x, void* y, int64_t rows, int64_t d, Elem to, cudaStream_t s) {
  if (to == Elem::BF16) softmax_kernel<<<row_blocks(rows), kThreads, 0, s>>>(x, static_cast<__nv_bfloat16*>(y), rows, d);
  else if (to == Elem::F16) softmax_kernel<<<row_blocks(rows), kThreads, 0, s>>>(x, static_cast<__half*>(y), rows, d);
  else softmax_kernel<<<row_blocks(rows), kThreads, 0, s>>>(x, static_cast<float*>(y), rows, d);
  check_launch("softmax");
}

void copy_rows(const float* x, float* y, int64_t outer, int64_t src_outer_mod, int64_t rows_in, int64_t start,
               int64_t rows_out, int64_t dst_rows, int64_t dst_start, int64_t inner, cudaStream_t s) {
  copy_rows_kernel<<<blocks_for(outer * rows_out * inner), kThreads, 0, s>>>(x, y, outer, src_outer_mod, rows_in, start,
                                                                            rows_out, dst_rows, dst_start, inner);
  check_launch("copy_rows");
}

void permute(const float* x, float* y, int rank, const int64_t* in_shape, const int64_t* perm, cudaStream_t s) {
  Dims d{};
  d.rank = rank;
  int64_t in_stride[8];
  int64_t st = 1, n = 1;
  for (int k = rank - 1; k >= 0; --k) in_stride[k] = st, st *= in_shape[k];
  for (int k = 0; k < rank; ++k) {
    d.out_shape[k] = in_shape[perm[k]];
    d.in_stride_for_out[k] = in_stride[perm[k]];
    n *= in_shape[k];
  }
  permute_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, y, n, d);
  check_launch("permute");
}

void split_heads(const float* qkv, void* out, int64_t b, int64_t t, int64_t h, int64_t hd, Elem to, cudaStream_t s) {
  int64_t n = b * t * 3 * h * hd;
  if (to == Elem::BF16) split_heads_kernel<<<blocks_for(n), kThreads, 0, s>>>(qkv, static_cast<__nv_bfloat16*>(out), b, t, h, hd);
  else if (to == Elem::F16) split_heads_kernel<<<blocks_for(n), kThreads, 0, s>>>(qkv, static_cast<__half*>(out), b, t, h, hd);
  else split_heads_kernel<<<blocks_for(n), kThreads, 0, s>>>(qkv, static_cast<float*>(out), b, t, h, hd);
  check_launch("split_heads");
}

void merge_heads(const float* o, float* y, int64_t b, int64_t t, int64_t h, int64_t hd, cudaStream_t s) {
  merge_heads_kernel<<<blocks_for(b * t * h * hd), kThreads, 0, s>>>(o, y, b, t, h, hd);
  check_launch("merge_heads");
}

}  // namespace cuda_backend
