// The least an ABI 2 plugin can be: the SDK's table and entry macro, the five required
// entries, one op. It scores itself 0 ("cannot run here") so `auto` must never pick it.
#include "vit_plugin_helpers.hpp"

namespace {

const int32_t kOps[] = {VIT_OP_SCALE};

vit_status create(const vit_backend_config*, void** context, char*, size_t) {
  static int marker;
  *context = &marker;
  return VIT_STATUS_OK;
}
void destroy(void*) {}
vit_status supports(void*, const vit_node*, char*, size_t) { return VIT_STATUS_OK; }
vit_status execute(void*, void*, const vit_node* node, char*, size_t) {
  const float* x = static_cast<const float*>(node->inputs[0].data);
  float* y = static_cast<float*>(node->outputs[0].data);
  for (int64_t i = 0; i < vit_plugin::element_count(node->inputs[0]); ++i) y[i] = x[i] * node->floats[0] + 1.0f;
  return VIT_STATUS_OK;
}
int32_t score(char* message, size_t size) {
  vit_plugin::write_message(message, size, "a test plugin: never picked by auto");
  return 0;
}

vit_backend_api table() {
  vit_backend_api api = vit_plugin::make_table("minimal_v2", "2.0", kOps);
  api.create = create;
  api.destroy = destroy;
  api.supports = supports;
  api.execute = execute;
  api.score = score;
  return api;
}

}  // namespace

VIT_PLUGIN_EXPORT(table())
