// A plugin that accepts every linear node and then fails at run time, or fails to start
// when its options say {"fail_create": true}: the host must turn both into errors, not crashes.
#include "vit_plugin_helpers.hpp"

#include <cstring>

namespace {

const int32_t kOps[] = {VIT_OP_LINEAR};

vit_status create(const vit_backend_config* config, void** context, char* message, size_t size) {
  if (std::strstr(config->options_json, "fail_create")) {
    vit_plugin::write_message(message, size, "refusing to start as asked");
    return VIT_STATUS_ERROR;
  }
  *context = nullptr;
  return VIT_STATUS_OK;
}
void destroy(void*) {}
vit_status supports(void*, const vit_node*, char*, size_t) { return VIT_STATUS_OK; }
vit_status execute(void*, void*, const vit_node*, char* message, size_t size) {
  return vit_plugin::guard(message, size, []() -> vit_status { throw std::runtime_error("kernel exploded"); });
}

vit_backend_api table() {
  vit_backend_api api = vit_plugin::make_table("failing", "0", kOps);
  api.create = create;
  api.destroy = destroy;
  api.supports = supports;
  api.execute = execute;
  return api;
}

}  // namespace

VIT_PLUGIN_EXPORT(table())
