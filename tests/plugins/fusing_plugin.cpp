// A plugin that only fuses: it claims every run "linear, then an add of that linear's output
// and a value from outside" (a projection and its residual) and runs it with plain loops,
// keeping the linear's output to itself. It checks the host's side of the contract: the
// inner value arrives with no buffer (NULL), the crossing ones with one.
#include "vit_plugin_helpers.hpp"

#include <vector>

namespace {

const int32_t kOps[] = {VIT_OP_LINEAR, VIT_OP_ADD};

vit_status create(const vit_backend_config*, void** context, char*, size_t) {
  static int marker;
  *context = &marker;
  return VIT_STATUS_OK;
}
void destroy(void*) {}

vit_status supports(void*, const vit_node*, char* message, size_t size) {
  vit_plugin::write_message(message, size, "runs fused linear+add only");
  return VIT_STATUS_UNSUPPORTED;
}

vit_status claim(void*, const vit_node* nodes, int32_t n, int32_t* length, char*, size_t) {
  *length = 0;
  if (n >= 2 && nodes[0].op == VIT_OP_LINEAR && nodes[1].op == VIT_OP_ADD && nodes[0].n_inputs == 3 &&
      VIT_INPUT_IS_CONSTANT(&nodes[0], 1) && VIT_INPUT_IS_CONSTANT(&nodes[0], 2) &&
      nodes[1].input_ids[1] == nodes[0].output_id && nodes[1].input_ids[0] != nodes[0].output_id &&
      vit_plugin::element_count(nodes[1].inputs[0]) == vit_plugin::element_count(nodes[1].outputs[0]))
    *length = 2;
  return VIT_STATUS_OK;
}

vit_status execute(void*, void*, const vit_node* node, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    if (node->op != VIT_OP_FUSED || node->n_fused != 2) throw std::runtime_error("expected a fused linear+add");
    const vit_node& lin = node->fused[0];
    const vit_node& add = node->fused[1];
    if (lin.outputs[0].data != nullptr || add.inputs[1].data != nullptr)
      throw std::runtime_error("the linear's output stays inside the run: the host must give it no buffer");
    if (!add.outputs[0].data || !add.inputs[0].data || !lin.inputs[0].data)
      throw std::runtime_error("a value crossing the run's edge came without a buffer");
    const vit_tensor& x = lin.inputs[0];
    const int64_t k = x.shape[x.rank - 1], rows = vit_plugin::element_count(x) / k, cols = lin.inputs[1].shape[0];
    const float* xs = static_cast<const float*>(x.data);
    const float* w = static_cast<const float*>(lin.inputs[1].data);
    const float* b = static_cast<const float*>(lin.inputs[2].data);
    const float* residual = static_cast<const float*>(add.inputs[0].data);
    float* y = static_cast<float*>(add.outputs[0].data);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        double acc = b[c];
        for (int64_t i = 0; i < k; ++i) acc += double(xs[r * k + i]) * w[c * k + i];
        y[r * cols + c] = residual[r * cols + c] + static_cast<float>(acc);
      }
    return VIT_STATUS_OK;
  });
}

vit_backend_api table() {
  vit_backend_api api = vit_plugin::make_table("fusing", "1.0", kOps);
  api.create = create;
  api.destroy = destroy;
  api.supports = supports;
  api.execute = execute;
  api.claim = claim;
  return api;
}

}  // namespace

VIT_PLUGIN_EXPORT(table())
