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

const vit_backend_api kApi = {
    /* .abi_version = */ VIT_PLUGIN_ABI_VERSION,
    /* .struct_size = */ sizeof(vit_backend_api),
    /* .name        = */ "failing",
    /* .version     = */ "0",
    /* .n_ops       = */ 1,
    /* .ops         = */ kOps,
    /* .create      = */ create,
    /* .destroy     = */ destroy,
    /* .describe    = */ nullptr,
    /* .supports    = */ supports,
    /* .prepare     = */ nullptr,
    /* .execute     = */ execute,
    /* .release     = */ nullptr,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const vit_backend_api* vit_plugin_init(const vit_host_api*,
                                                                                          uint32_t) {
  return &kApi;
}
