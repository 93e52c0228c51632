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

__global__ void patchify_kernel(const float* x, float* y, int64_t n, int64_t c, int64_t h, int64_t w, int64_t p) {
  const int64_t gw = w / p, grid = (h / p) * gw, row = c * p * p, total = n * grid * row;
  GRID_STRIDE(i, total) {
    int64_t e = i % row, g = (i / row) % grid, b = i / (row * grid);
    int64_t ch = e / (p * p), ky = (e / p) % p, kx = e % p;
    int64_t yy = (g / gw) * p + ky, xx = (g % gw) * p + kx;
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
  patchify_kernel<<<blocks_for(n * c * h * w), kThreads, 0, s>>>(x, y, n, c, h, w, p);
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
  if (e == Elem::BF16) gelu_kernel<<<blocks_for(n), kThreads, 0, s>>>(static_cast<__nv_bfloat16*>(x), n);
  else if (e == Elem::F16) gelu_kernel<<<blocks_for(n), kThreads, 0, s>>>(static_cast<__half*>(x), n);
  else gelu_kernel<<<blocks_for(n), kThreads, 0, s>>>(static_cast<float*>(x), n);
  check_launch("gelu");
}

void gelu_f32(const float* x, float* y, int64_t n, cudaStream_t s) {
  gelu_f32_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, y, n);
  check_launch("gelu");
}

void layer_norm(const float* x, const float* gamma, const float* beta, void* y, int64_t rows, int64_t d, float eps,
                Elem to, cudaStream_t s) {
  if (to == Elem::BF16)
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
