// A plugin built against a future ABI: the host must refuse it, naming both versions.
#include "vit_plugin.h"

namespace {
vit_backend_api api = {};
}

extern "C" __attribute__((visibility("default"))) const vit_backend_api* vit_plugin_init(const vit_host_api*,
                                                                                          uint32_t) {
  api.abi_version = 999;
  api.struct_size = sizeof(vit_backend_api);
  api.name = "bad_abi";
  return &api;
}
