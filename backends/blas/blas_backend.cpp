// The blas backend: the matmuls (linear, batch_matmul) through xtensor-blas on OpenBLAS;
// everything else it declines, since a BLAS library has nothing faster to offer for it
// (the executor hands those nodes to the next backend). It says which OpenBLAS kernel it
// runs: Debian's OpenBLAS 0.3.21 falls back to generic kernels on CPUs it does not know,
// unless OPENBLAS_CORETYPE names one.
#include "vit_plugin_helpers.hpp"

#include <xtensor-blas/xblas.hpp>
#include <xtensor/xadapt.hpp>

#include <string>

// OpenBLAS's own entry points (its cblas.h clashes with the one xtensor-blas brings).
extern "C" {
void openblas_set_num_threads(int threads);
char* openblas_get_config(void);
char* openblas_get_corename(void);
}

namespace {

struct Context {
  std::string description;
};

const int32_t kOps[] = {VIT_OP_LINEAR, VIT_OP_BATCH_MATMUL};

auto matrix(const float* data, int64_t rows, int64_t cols) {
  return xt::adapt(const_cast<float*>(data), static_cast<size_t>(rows * cols), xt::no_ownership(),
                   std::array<size_t, 2>{static_cast<size_t>(rows), static_cast<size_t>(cols)});
}

void linear(const vit_node& n) {
  const vit_tensor &x = n.inputs[0], &w = n.inputs[1];
  int64_t K = w.shape[1], N = w.shape[0], M = vit_plugin::element_count(x) / K;
  auto* y = static_cast<float*>(n.outputs[0].data);
  float beta = 0.0f;
  if (n.n_inputs > 2) {  // y = bias, then y += x w^T
    const auto* b = static_cast<const float*>(n.inputs[2].data);
    for (int64_t i = 0; i < M; ++i) std::copy(b, b + N, y + i * N);
    beta = 1.0f;
  }
  auto out = matrix(y, M, N);
  xt::blas::gemm(matrix(static_cast<const float*>(x.data), M, K), matrix(static_cast<const float*>(w.data), N, K), out,
                 false, true, 1.0f, beta);
}

void batch_matmul(const vit_node& n) {
  const vit_tensor &a = n.inputs[0], &b = n.inputs[1];
  int r = a.rank;
  bool tb = n.ints[0] != 0;
  int64_t M = a.shape[r - 2], K = a.shape[r - 1], N = tb ? b.shape[r - 2] : b.shape[r - 1];
  int64_t batches = vit_plugin::element_count(a) / (M * K);
  for (int64_t i = 0; i < batches; ++i) {
    auto out = matrix(static_cast<float*>(n.outputs[0].data) + i * M * N, M, N);
    auto bm = tb ? matrix(static_cast<const float*>(b.data) + i * N * K, N, K)
                 : matrix(static_cast<const float*>(b.data) + i * K * N, K, N);
    xt::blas::gemm(matrix(static_cast<const float*>(a.data) + i * M * K, M, K), bm, out, false, tb);
  }
}

vit_status create(const vit_backend_config* config, void** context, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    std::string precision = config->precision ? config->precision : "fp32";
    if (precision != "fp32") {
      vit_plugin::write_message(message, size, "blas: precision '" + precision + "' is not supported (fp32 only)");
      return VIT_STATUS_ERROR;
    }
    int threads = config->threads > 0 ? config->threads : 1;
    openblas_set_num_threads(threads);
    auto* ctx = new Context;
    ctx->description = std::string("xtensor-blas on OpenBLAS (") + openblas_get_config() + "), kernel " +
                       openblas_get_corename() + ", fp32, " + std::to_string(threads) + " thread(s)";
    *context = ctx;
    return VIT_STATUS_OK;
  });
}

void destroy(void* context) { delete static_cast<Context*>(context); }

const char* describe(void* context) { return static_cast<Context*>(context)->description.c_str(); }

vit_status supports(void*, const vit_node* node, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    if (node->op != VIT_OP_LINEAR && node->op != VIT_OP_BATCH_MATMUL) {
      vit_plugin::write_message(message, size, "blas only runs matmuls");
      return VIT_STATUS_UNSUPPORTED;
    }
    for (int32_t i = 0; i < node->n_inputs; ++i)
      if (node->inputs[i].dtype != VIT_DTYPE_F32 || !vit_plugin::is_contiguous(node->inputs[i])) {
        vit_plugin::write_message(message, size, "blas takes contiguous f32 only");
        return VIT_STATUS_UNSUPPORTED;
      }
    return VIT_STATUS_OK;
  });
}

vit_status execute(void*, void*, const vit_node* node, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    if (node->op == VIT_OP_LINEAR) linear(*node);
    else batch_matmul(*node);
    return VIT_STATUS_OK;
  });
}

int32_t score(char*, size_t) { return 10; }  // matmuls only; the rest falls to reference

vit_backend_api table() {
  vit_backend_api api = vit_plugin::make_table("blas", "2.0", kOps);
  api.create = create;
  api.destroy = destroy;
  api.describe = describe;
  api.supports = supports;
  // no prepare: nothing to pre-pack
  api.execute = execute;

  api.score = score;
  return api;
}

}  // namespace

VIT_PLUGIN_EXPORT(table())
