// A plugin whose contexts wait for each other: the first execute of a context waits (up to
// the option wait_ms, default 20 s) until as many contexts as the option "meet" (default 2)
// are inside execute at the same moment, and fails saying so if they never are. Lanes that run one after another
// instead of side by side therefore fail, and lanes that do run side by side pass. It
// runs SCALE nodes (y = x * s), and says it may run contexts at once.
#include "vit_plugin_helpers.hpp"

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

namespace {

const int32_t kOps[] = {VIT_OP_SCALE};

struct Meeting {
  std::mutex mutex;
  std::condition_variable changed;
  int inside = 0;
  bool met = false;  // once the contexts have met, nobody waits again
};

// One meeting per head count, so that tests asking for different counts do not mix.
Meeting& meeting(int meet) {
  static auto* lock = new std::mutex;
  static auto* meetings = new std::map<int, Meeting>;
  std::lock_guard<std::mutex> guard(*lock);
  return (*meetings)[meet];
}

struct Context {
  int meet = 2, wait_ms = 20000;
  bool waited = false;
};

vit_status create(const vit_backend_config* config, void** context, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto* ctx = new Context;
    ctx->meet = std::stoi(vit_plugin::option(*config, "meet", "2"));
    ctx->wait_ms = std::stoi(vit_plugin::option(*config, "wait_ms", "20000"));
    *context = ctx;
    return VIT_STATUS_OK;
  });
}
void destroy(void* context) { delete static_cast<Context*>(context); }
vit_status supports(void*, const vit_node*, char*, size_t) { return VIT_STATUS_OK; }

vit_status execute(void* context, void*, const vit_node* node, char* message, size_t size) {
  auto* ctx = static_cast<Context*>(context);
  if (!ctx->waited) {
    ctx->waited = true;
    Meeting& m = meeting(ctx->meet);
    std::unique_lock<std::mutex> lock(m.mutex);
    ++m.inside;
    if (m.inside >= ctx->meet) m.met = true;
    m.changed.notify_all();
    bool met = m.changed.wait_for(lock, std::chrono::milliseconds(ctx->wait_ms), [&] { return m.met; });
    --m.inside;
    if (!met) {
      vit_plugin::write_message(message, size, "no other context ran at the same time");
      return VIT_STATUS_ERROR;
    }
  }
  const float* x = static_cast<const float*>(node->inputs[0].data);
  float* y = static_cast<float*>(node->outputs[0].data);
  for (int64_t i = 0; i < vit_plugin::element_count(node->inputs[0]); ++i) y[i] = x[i] * node->floats[0];
  return VIT_STATUS_OK;
}

vit_backend_api table() {
  vit_backend_api api = vit_plugin::make_table("rendezvous", "1.0", kOps);
  api.create = create;
  api.destroy = destroy;
  api.supports = supports;
  api.execute = execute;
  api.concurrent_contexts = 1;
  return api;
}

}  // namespace

VIT_PLUGIN_EXPORT(table())
