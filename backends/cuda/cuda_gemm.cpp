#include "cuda_gemm.hpp"

#include <dlfcn.h>

#include <mutex>
#include <stdexcept>
#include <type_traits>
#include <string>

#define CUBLAS_SONAME_MAJOR VITBATCH_STR(CUBLAS_VER_MAJOR)
#define VITBATCH_STR(x) VITBATCH_STR2(x)
#define VITBATCH_STR2(x) #x

namespace cuda_backend {
namespace {

// cuBLAS and cuBLASLt are opened when a context is made, not when the plugin loads: they are
// large (hundreds of MB mapped), and on a machine without a GPU the plugin is only asked for
// its score, so every CPU run would pay for them. Each function is looked up by name with the
// type of its declaration in the headers.
struct Blas {
  decltype(&::cublasLtCreate) cublasLtCreate = nullptr;
  decltype(&::cublasLtDestroy) cublasLtDestroy = nullptr;
  decltype(&::cublasLtMatmulDescCreate) cublasLtMatmulDescCreate = nullptr;
  decltype(&::cublasLtMatmulDescDestroy) cublasLtMatmulDescDestroy = nullptr;
  decltype(&::cublasLtMatmulDescSetAttribute) cublasLtMatmulDescSetAttribute = nullptr;
  decltype(&::cublasLtMatrixLayoutCreate) cublasLtMatrixLayoutCreate = nullptr;
  decltype(&::cublasLtMatrixLayoutDestroy) cublasLtMatrixLayoutDestroy = nullptr;
  decltype(&::cublasLtMatmulPreferenceCreate) cublasLtMatmulPreferenceCreate = nullptr;
  decltype(&::cublasLtMatmulPreferenceDestroy) cublasLtMatmulPreferenceDestroy = nullptr;
  decltype(&::cublasLtMatmulPreferenceSetAttribute) cublasLtMatmulPreferenceSetAttribute = nullptr;
  decltype(&::cublasLtMatmulAlgoGetHeuristic) cublasLtMatmulAlgoGetHeuristic = nullptr;
  decltype(&::cublasLtMatmul) cublasLtMatmul = nullptr;
  decltype(&::cublasCreate_v2) cublasCreate = nullptr;
  decltype(&::cublasDestroy_v2) cublasDestroy = nullptr;
  decltype(&::cublasSetStream_v2) cublasSetStream = nullptr;
  decltype(&::cublasSetMathMode) cublasSetMathMode = nullptr;
  decltype(&::cublasSetWorkspace_v2) cublasSetWorkspace = nullptr;
  // (the C entry; C++ also sees an inline overload taking cublasComputeType_t's old enum)
  cublasStatus_t (*cublasGemmStridedBatchedEx)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                               const void*, const void*, cudaDataType, int, long long int, const void*,
                                               cudaDataType, int, long long int, const void*, void*, cudaDataType, int,
                                               long long int, int, cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
  decltype(&::cublasGetStatusString) cublasGetStatusString = nullptr;
};

const Blas& blas() {
  static Blas b;
  static std::string error;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lt = dlopen("libcublasLt.so." CUBLAS_SONAME_MAJOR, RTLD_NOW | RTLD_LOCAL);
    void* cb = lt ? dlopen("libcublas.so." CUBLAS_SONAME_MAJOR, RTLD_NOW | RTLD_LOCAL) : nullptr;
    if (!lt || !cb) {
      const char* e = dlerror();
      error = std::string("cannot load cuBLAS: ") + (e ? e : "unknown error");
      return;
    }
    auto find = [&](void* lib, const char* name, auto& fn) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      if (!fn && error.empty()) error = std::string("cuBLAS lacks ") + name;
    };
    find(lt, "cublasLtCreate", b.cublasLtCreate);
    find(lt, "cublasLtDestroy", b.cublasLtDestroy);
    find(lt, "cublasLtMatmulDescCreate", b.cublasLtMatmulDescCreate);
    find(lt, "cublasLtMatmulDescDestroy", b.cublasLtMatmulDescDestroy);
    find(lt, "cublasLtMatmulDescSetAttribute", b.cublasLtMatmulDescSetAttribute);
    find(lt, "cublasLtMatrixLayoutCreate", b.cublasLtMatrixLayoutCreate);
    find(lt, "cublasLtMatrixLayoutDestroy", b.cublasLtMatrixLayoutDestroy);
    find(lt, "cublasLtMatmulPreferenceCreate", b.cublasLtMatmulPreferenceCreate);
    find(lt, "cublasLtMatmulPreferenceDestroy", b.cublasLtMatmulPreferenceDestroy);
    find(lt, "cublasLtMatmulPreferenceSetAttribute", b.cublasLtMatmulPreferenceSetAttribute);
    find(lt, "cublasLtMatmulAlgoGetHeuristic", b.cublasLtMatmulAlgoGetHeuristic);
    find(lt, "cublasLtMatmul", b.cublasLtMatmul);
    find(cb, "cublasCreate_v2", b.cublasCreate);
    find(cb, "cublasDestroy_v2", b.cublasDestroy);
    find(cb, "cublasSetStream_v2", b.cublasSetStream);
    find(cb, "cublasSetMathMode", b.cublasSetMathMode);
    find(cb, "cublasSetWorkspace_v2", b.cublasSetWorkspace);
    find(cb, "cublasGemmStridedBatchedEx", b.cublasGemmStridedBatchedEx);
    find(cb, "cublasGetStatusString", b.cublasGetStatusString);
  });
  if (!error.empty()) throw std::runtime_error(error);
  return b;
}

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + ": " + blas().cublasGetStatusString(s) + " (cuBLAS status " +
                             std::to_string(static_cast<int>(s)) + ")");
}
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

cudaDataType_t type_of(Elem e) {
  return e == Elem::BF16 ? CUDA_R_16BF : e == Elem::F16 ? CUDA_R_16F : CUDA_R_32F;
}

}  // namespace

GemmPlan::~GemmPlan() {
  if (d) blas().cublasLtMatrixLayoutDestroy(d);
  if (b) blas().cublasLtMatrixLayoutDestroy(b);
  if (a) blas().cublasLtMatrixLayoutDestroy(a);
  if (desc) blas().cublasLtMatmulDescDestroy(desc);
}

void Gemm::init(cudaStream_t stream, bool tf32) {
  stream_ = stream;
  tf32_ = tf32;
  check(blas().cublasLtCreate(&lt_), "cublasLtCreate");
  check(blas().cublasCreate(&blas_), "cublasCreate");
  check(blas().cublasSetStream(blas_, stream), "cublasSetStream");
  // Strict fp32 unless TF32 was asked for: NVIDIA_TF32_OVERRIDE aside, pedantic math keeps
  // cuBLAS from choosing reduced-precision tensor-core paths on its own.
  check(blas().cublasSetMathMode(blas_, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  check(cudaMalloc(&workspace_, workspace_bytes_), "cudaMalloc (cuBLASLt workspace)");
  // cuBLAS's batched products (fp32 attention) share it: with a workspace of its own making
  // cuBLAS may allocate while a CUDA graph is being captured, which the capture forbids.
  check(blas().cublasSetWorkspace(blas_, workspace_, workspace_bytes_), "cublasSetWorkspace");
}

void Gemm::destroy() {
  if (workspace_) cudaFree(workspace_);
  if (blas_) blas().cublasDestroy(blas_);
  if (lt_) blas().cublasLtDestroy(lt_);
  workspace_ = nullptr, blas_ = nullptr, lt_ = nullptr;
}

std::unique_ptr<GemmPlan> Gemm::plan(int64_t m, int64_t n, int64_t k, Elem w, Elem x, Elem y, const void* bias) {
  // Column-major view: y^T [n, m] = w [k, n]^T-op x^T [k, m].
  auto p = std::make_unique<GemmPlan>();
  cublasComputeType_t compute = (w == Elem::F32 && tf32_) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  check(blas().cublasLtMatmulDescCreate(&p->desc, compute, CUDA_R_32F), "cublasLtMatmulDescCreate");
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  check(blas().cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "TRANSA");
  check(blas().cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "TRANSB");
  if (bias) {
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    check(blas().cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue), "EPILOGUE");
    check(blas().cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias), "BIAS_POINTER");
  }
  check(blas().cublasLtMatrixLayoutCreate(&p->a, type_of(w), k, n, k), "layout A");
  check(blas().cublasLtMatrixLayoutCreate(&p->b, type_of(x), k, m, k), "layout B");
  check(blas().cublasLtMatrixLayoutCreate(&p->d, type_of(y), n, m, n), "layout D");
  cublasLtMatmulPreference_t pref = nullptr;
  check(blas().cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  check(blas().cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_,
                                             sizeof workspace_bytes_),
        "MAX_WORKSPACE_BYTES");
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t s = blas().cublasLtMatmulAlgoGetHeuristic(lt_, p->desc, p->a, p->b, p->d, p->d, pref, 1, &result, &found);
  blas().cublasLtMatmulPreferenceDestroy(pref);
  check(s, "cublasLtMatmulAlgoGetHeuristic");
  if (found == 0)
    throw std::runtime_error("cuBLASLt has no algorithm for a " + std::to_string(m) + "x" + std::to_string(k) + " @ " +
                             std::to_string(k) + "x" + std::to_string(n) + " product in these types");
  p->algo = result.algo;
  return p;
}

void Gemm::run(const GemmPlan& p, const void* w, const void* x, void* y, const void* residual) {
  const float one = 1.0f, zero = 0.0f;
  check(blas().cublasLtMatmul(lt_, p.desc, &one, w, p.a, x, p.b, residual ? &one : &zero, residual ? residual : y, p.d, y, p.d,
                       &p.algo, workspace_, workspace_bytes_, stream_),
        "cublasLtMatmul");
}

void Gemm::attention_scores(const void* q, const void* k, float* scores, int64_t batch, int64_t t, int64_t hd, Elem e,
                            float alpha) {
  // Column-major: S^T-view [t(j), t(i)] = K[j, :] . Q[i, :], i.e. op(A)=K^T-as-stored, B=Q.
  const float zero = 0.0f;
  cublasComputeType_t compute = (e == Elem::F32 && tf32_) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  check(blas().cublasGemmStridedBatchedEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(t), static_cast<int>(t),
                                   static_cast<int>(hd), &alpha, k, type_of(e), static_cast<int>(hd), t * hd, q,
                                   type_of(e), static_cast<int>(hd), t * hd, &zero, scores, CUDA_R_32F,
                                   static_cast<int>(t), t * t, static_cast<int>(batch), compute, CUBLAS_GEMM_DEFAULT),
        "attention scores (cublasGemmStridedBatchedEx)");
}

void Gemm::attention_values(const void* p, const void* v, float* o, int64_t batch, int64_t t, int64_t hd, Elem e) {
  // Column-major: O^T [hd, t] = V^T [hd, t] @ P^T [t, t].
  const float one = 1.0f, zero = 0.0f;
  cublasComputeType_t compute = (e == Elem::F32 && tf32_) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  check(blas().cublasGemmStridedBatchedEx(blas_, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(hd), static_cast<int>(t),
                                   static_cast<int>(t), &one, v, type_of(e), static_cast<int>(hd), t * hd, p, type_of(e),
                                   static_cast<int>(t), t * t, &zero, o, CUDA_R_32F, static_cast<int>(hd), t * hd,
                                   static_cast<int>(batch), compute, CUBLAS_GEMM_DEFAULT),
        "attention values (cublasGemmStridedBatchedEx)");
}

void Gemm::batched_f32(const float* a, const float* b, float* c, int64_t batch, int64_t m, int64_t n, int64_t k,
                       bool transpose_b) {
  // Column-major: C^T [n, m] = op(B) [n, k] @ A^T [k, m].
  const float one = 1.0f, zero = 0.0f;
  cublasComputeType_t compute = tf32_ ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  check(blas().cublasGemmStridedBatchedEx(blas_, transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n),
                                   static_cast<int>(m), static_cast<int>(k), &one, b, CUDA_R_32F,
                                   static_cast<int>(transpose_b ? k : n), n * k, a, CUDA_R_32F, static_cast<int>(k),
                                   m * k, &zero, c, CUDA_R_32F, static_cast<int>(n), m * n, static_cast<int>(batch),
                                   compute, CUBLAS_GEMM_DEFAULT),
        "batch_matmul (cublasGemmStridedBatchedEx)");
}

}  // namespace cuda_backend
