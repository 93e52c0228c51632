// The reference backend: every primitive op, plainly. It is the yardstick the other
// backends are tested against and the executor's last resort, so it never declines a
// well-formed float32 primitive node; composite ops it leaves to core's lowering.
#include "reference_ops.hpp"
#include "vit_plugin_helpers.hpp"

#include <string>

namespace {

struct Context {
  int threads = 1;
  std::string description;
};

const int32_t kOps[] = {VIT_OP_PATCHIFY, VIT_OP_LINEAR,  VIT_OP_BATCH_MATMUL, VIT_OP_ADD,
                        VIT_OP_LAYER_NORM, VIT_OP_GELU,  VIT_OP_SOFTMAX,      VIT_OP_CONCAT,
                        VIT_OP_SLICE,    VIT_OP_RESHAPE, VIT_OP_PERMUTE,      VIT_OP_SCALE,
                        VIT_OP_MUL,      VIT_OP_REDUCE_MEAN, VIT_OP_REDUCE_MAX, VIT_OP_GELU_TANH,
                        VIT_OP_QUICK_GELU, VIT_OP_SILU,  VIT_OP_ROPE};

vit_status create(const vit_backend_config* config, void** context, char* message,
                  size_t message_size) {
  return vit_plugin::guard(message, message_size, [&] {
    std::string precision = config->precision ? config->precision : "fp32";
    if (precision != "fp32") {
      vit_plugin::write_message(message, message_size,
                                "reference: precision '" + precision + "' is not supported (fp32 only)");
      return VIT_STATUS_ERROR;
    }
    auto* ctx = new Context;
    ctx->threads = config->threads > 0 ? config->threads : 1;
    ctx->description = "plain xtensor loops, fp32, double accumulation, " +
                       std::to_string(ctx->threads) + " thread(s)";
    *context = ctx;
    return VIT_STATUS_OK;
  });
}

void destroy(void* context) { delete static_cast<Context*>(context); }

const char* describe(void* context) { return static_cast<Context*>(context)->description.c_str(); }

vit_status supports(void*, const vit_node* node, char* message, size_t message_size) {
  return vit_plugin::guard(message, message_size, [&] {
    for (int32_t op : kOps) {
      if (op != node->op) continue;
      for (int32_t i = 0; i < node->n_inputs; ++i)
        if (node->inputs[i].dtype != VIT_DTYPE_F32 || !vit_plugin::is_contiguous(node->inputs[i])) {
          vit_plugin::write_message(message, message_size, "reference takes contiguous f32 only");
          return VIT_STATUS_UNSUPPORTED;
        }
      return VIT_STATUS_OK;
    }
    vit_plugin::write_message(message, message_size,
                              std::string("op ") + vit_plugin::op_name(node->op) + " is not implemented");
    return VIT_STATUS_UNSUPPORTED;
  });
}

vit_status execute(void* context, void*, const vit_node* node, char* message, size_t message_size) {
  return vit_plugin::guard(message, message_size, [&] {
    reference::run_node(*node, static_cast<Context*>(context)->threads);
    return VIT_STATUS_OK;
  });
}

int32_t score(char*, size_t) { return 1; }  // exact and everywhere, but the slowest: auto picks it last

vit_backend_api table() {
  vit_backend_api api = vit_plugin::make_table("reference", "2.0", kOps);
  api.create = create;
  api.destroy = destroy;
  api.describe = describe;
  api.supports = supports;
  // no prepare: nothing to pre-pack
  api.execute = execute;

  api.score = score;
  api.concurrent_contexts = 1;  // a context is its thread count; the kernels share nothing
  return api;
}

}  // namespace

VIT_PLUGIN_EXPORT(table())
