// The oneDNN backend: matmuls on oneDNN's JIT kernels (brgemm/AVX-512 where the CPU has it)
// with weights pre-packed once, bias and GELU fused as post-ops, attention as one fused kernel,
// LayerNorm / softmax / GELU / adds as oneDNN primitives; fp32, bf16 (weights and matmul
// inputs in bf16, f32 accumulation) or int8 (u8 x s8; activations quantised with the calibrated
// ranges on the nodes, or per call without them).
// Threads are OpenMP's, as oneDNN is built on it here.
#include "onednn_kernels.hpp"
#include "vit_plugin_helpers.hpp"

#include <omp.h>

#include <string>

namespace {

using onednn_backend::Context;
using onednn_backend::Kernel;

const int32_t kOps[] = {VIT_OP_PATCHIFY, VIT_OP_LINEAR, VIT_OP_BATCH_MATMUL, VIT_OP_ADD, VIT_OP_LAYER_NORM,
                        VIT_OP_GELU,     VIT_OP_SOFTMAX, VIT_OP_SCALE,       VIT_OP_ATTENTION, VIT_OP_MLP,
                        VIT_OP_MUL,      VIT_OP_REDUCE_MEAN, VIT_OP_REDUCE_MAX, VIT_OP_GELU_TANH, VIT_OP_QUICK_GELU,
                        VIT_OP_SILU,     VIT_OP_SLICE,       VIT_OP_CONCAT};

const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::sse41: return "sse41";
    default: return "other";
  }
}

// Whether option `key` (`own` or onednn) picks vitbatch's own kernel for a precision's
// matmuls: by default where `by_default`; asked for, only where the CPU `runs` it (it needs
// `isa`). Any other value is an error that names the two.
bool own_kernel_chosen(const vit_backend_config& config, const char* key, const std::string& own, bool runs,
                       bool by_default, const char* isa) {
  const std::string value = vit_plugin::option(config, key, by_default ? own : "onednn");
  if (value != own && value != "onednn")
    throw std::runtime_error(std::string("onednn: option ") + key + " must be " + own + " or onednn, not '" + value + "'");
  if (value == own && !runs)
    throw std::runtime_error(std::string("onednn: option ") + key + "=" + own + " needs " + isa + ", which this CPU lacks");
  return value == own;
}

vit_status create(const vit_backend_config* config, void** context, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto ctx = std::make_unique<Context>();
    ctx->precision = onednn_backend::parse_precision(config->precision ? config->precision : "fp32");
    ctx->threads = config->threads > 0 ? config->threads : 1;
    // Intel's AVX512_BF16 without AMX runs oneDNN 2.6's bf16 matmuls slower than fp32 (the
    // issue's measurement: ~150 vs ~250 GFLOP/s); AMD's and AMX run them about twice as fast.
    dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
    bool fast_bf16 = isa == dnnl::cpu_isa::avx512_core_amx ||
                     (isa == dnnl::cpu_isa::avx512_core_bf16 && __builtin_cpu_is("amd"));
    ctx->float_fallback = fast_bf16 ? onednn_backend::Precision::BF16 : onednn_backend::Precision::F32;
    // int8 matmuls: vitbatch's own AVX512_VNNI kernel where the CPU has it (faster than oneDNN
    // 2.6's on ViT's shapes on the AMD EPYC it was measured on: vnni_gemm.hpp), or oneDNN's.
    const bool vnni_runs = onednn_backend::vnni_gemm_available();
    ctx->vnni_int8 = own_kernel_chosen(*config, "int8_gemm", "vnni", vnni_runs, vnni_runs, "AVX512_VNNI");
    // bf16 matmuls: vitbatch's own AVX512_BF16 kernel where oneDNN's bf16 is slow (Intel without
    // AMX), oneDNN's elsewhere.
    const bool own_bf16_runs = onednn_backend::bf16_gemm_available();
    ctx->bf16_own = own_kernel_chosen(*config, "bf16_gemm", "own", own_bf16_runs, own_bf16_runs && !fast_bf16, "AVX512_BF16");
    omp_set_num_threads(ctx->threads);
    const dnnl_version_t* v = dnnl_version();
    ctx->description = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                       std::to_string(v->patch) + ", ISA " + isa_name(isa) + ", " +
                       onednn_backend::precision_name(ctx->precision) + ", " + std::to_string(ctx->threads) +
                       " OpenMP thread(s)";
    if (ctx->precision == onednn_backend::Precision::INT8)
      ctx->description += ctx->vnni_int8 ? ", int8 matmuls on vitbatch's AVX512_VNNI kernel" : ", int8 matmuls on oneDNN's";
    if (ctx->precision == onednn_backend::Precision::BF16 && ctx->bf16_own)
      ctx->description += ", bf16 matmuls on vitbatch's AVX512_BF16 kernel";
    else if (ctx->precision == onednn_backend::Precision::BF16 && !fast_bf16)
      ctx->description += "; on this CPU oneDNN's bf16 matmuls are slower than fp32 (`vitbatch bench --compare` "
                          "measures both)";
    *context = ctx.release();
    return VIT_STATUS_OK;
  });
}

void destroy(void* context) { delete static_cast<Context*>(context); }

const char* describe(void* context) { return static_cast<Context*>(context)->description.c_str(); }

vit_status supports(void*, const vit_node* node, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    std::string why;
    if (onednn_backend::accepts(*node, &why)) return VIT_STATUS_OK;
    vit_plugin::write_message(message, size, why);
    return VIT_STATUS_UNSUPPORTED;
  });
}

vit_status prepare(void* context, const vit_node* node, void** state, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto* ctx = static_cast<Context*>(context);
    omp_set_num_threads(ctx->threads);  // the executor's thread, which runs every node
    *state = onednn_backend::make_kernel(*ctx, *node).release();
    return VIT_STATUS_OK;
  });
}

vit_status execute(void* context, void* state, const vit_node* node, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto* ctx = static_cast<Context*>(context);
    // This context's count on whichever thread runs it (a lane's, or the caller's).
    omp_set_num_threads(ctx->threads);
    static_cast<Kernel*>(state)->run(*ctx, *node);
    ctx->stream.wait();
    return VIT_STATUS_OK;
  });
}

void release(void*, void* state) { delete static_cast<Kernel*>(state); }

// A projection or MLP and the residual add after it, as one matmul with the add as a post-op;
// in calibrated int8, the LayerNorm before it too (onednn_kernels.hpp: claim_length).
vit_status claim(void* context, const vit_node* nodes, int32_t count, int32_t* length, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    *length = onednn_backend::claim_length(*static_cast<Context*>(context), nodes, count);
    return VIT_STATUS_OK;
  });
}

int32_t score(char*, size_t) { return 20; }  // every op on JIT kernels for this CPU

vit_backend_api table() {
  vit_backend_api api = vit_plugin::make_table("onednn", "2.0", kOps);
  api.create = create;
  api.destroy = destroy;
  api.describe = describe;
  api.supports = supports;
  api.prepare = prepare;
  api.execute = execute;
  api.release = release;
  api.score = score;
  api.claim = claim;
  // Each context keeps its own stream and scratch and sets OpenMP's thread count for the
  // calling thread only (omp_set_num_threads is per thread), so lanes may run side by side.
  api.concurrent_contexts = 1;
  return api;
}

}  // namespace

VIT_PLUGIN_EXPORT(table())
