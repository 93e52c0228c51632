// cuda_gemm.hpp: the CUDA backend's matrix products. Linear layers on cuBLASLt, planned once
// per node at prepare (layouts, bias epilogue, the heuristic's algorithm); attention's two
// batched products and the primitive batch_matmul on cuBLAS's strided-batched GEMM.
#pragma once

#include "cuda_kernels.cuh"

#include <cublasLt.h>
#include <cublas_v2.h>

#include <memory>

namespace cuda_backend {

struct GemmPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~GemmPlan();
};

class Gemm {
 public:
  void init(cudaStream_t stream, bool tf32);
  void destroy();
  // Row-major y[m, n] = x[m, k] @ w[n, k]^T (+ bias[n], in y's type), x and w in `in`.
  std::unique_ptr<GemmPlan> plan(int64_t m, int64_t n, int64_t k, Elem w, Elem x, Elem y, const void* bias);
  // With `residual` (float32, y's shape): y = x @ w^T + bias + residual, in the same pass.
  void run(const GemmPlan& plan, const void* w, const void* x, void* y, const void* residual = nullptr);
  // scores[b][i][j] = alpha * q[b][i] . k[b][j] over `batch` [t, hd] blocks (float32 out).
  void attention_scores(const void* q, const void* k, float* scores, int64_t batch, int64_t t, int64_t hd, Elem e,
                        float alpha);
  // o[b] = p[b] @ v[b]: p [t, t], v [t, hd] in e, o float32.
  void attention_values(const void* p, const void* v, float* o, int64_t batch, int64_t t, int64_t hd, Elem e);
  // Row-major c[batch, m, n] = a[batch, m, k] @ b (b [batch, k, n], or [batch, n, k] transposed).
  void batched_f32(const float* a, const float* b, float* c, int64_t batch, int64_t m, int64_t n, int64_t k,
                   bool transpose_b);

 private:
  cublasLtHandle_t lt_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 32u << 20;
  bool tf32_ = false;
};

}  // namespace cuda_backend
