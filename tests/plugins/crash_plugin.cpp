// A plugin whose init crashes: the host must reject it (probed in a child process), not die.
#include "vit_plugin.h"

#include <csignal>

extern "C" __attribute__((visibility("default"))) const vit_backend_api* vit_plugin_init(const vit_host_api*,
                                                                                          uint32_t) {
  std::raise(SIGSEGV);
  return nullptr;
}
