// A plugin whose init never returns: the host must give up on it after its timeout.
#include "vit_plugin.h"

#include <atomic>

extern "C" __attribute__((visibility("default"))) const vit_backend_api* vit_plugin_init(const vit_host_api*,
                                                                                          uint32_t) {
  std::atomic<bool> forever{true};
  while (forever.load()) {
  }
  return nullptr;
}
