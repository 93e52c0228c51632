// A device backend without a device: its "memory" is host memory holding every float
// bit-inverted, so anything that reads a buffer of it without copy() (the host, another
// backend, a missed copy step) gets garbage. It runs linear, gelu and add; the executor must
// place copies wherever a value crosses between it and the host. It also checks that every
// activation pointer it is handed is one of its own buffers, and that weights are not. Its
// staging memory (VIT_ALLOC_HOST_STAGING) is plain host memory that it counts, and describe()
// says how many staging buffers are out and how many uploads read one. With the option
// patchify=true it runs patchify too, so that the pixels themselves are uploaded. With
// record=true it records runs of executes as a CUDA graph would: while recording nothing is
// computed, sequence_end then runs what was recorded, and a later sequence_begin of the key
// replays it with no execute() from the host (record=fail: every recording fails, and the host
// must rerun); describe() then also counts executes, recordings, replays and forgotten keys.
// With queue=true its work is queued, as on a GPU: execute() and the QUEUED copies are done
// only when something waits (wait_mark, a plain copy, synchronize, a free), so a host that
// reads logits before waiting for them, or lets a batch's buffers be overwritten while it
// is in flight, gets wrong answers; describe() then counts marks and QUEUED copies.
#include "vit_plugin_helpers.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace {

const int32_t kOps[] = {VIT_OP_LINEAR, VIT_OP_GELU, VIT_OP_ADD, VIT_OP_PATCHIFY};

// An execute() as recorded: the node with its own copies of its tensors (the host's are
// valid only during the call).
struct Recorded {
  vit_node node{};
  std::vector<vit_tensor> inputs, outputs;
  std::string name;
};

struct Context {
  std::string record = "false";  // "true", "fail"
  bool recording = false;
  std::map<uint64_t, std::vector<std::shared_ptr<Recorded>>> recordings;
  std::vector<std::shared_ptr<Recorded>> current;
  bool queue = false;
  std::deque<std::function<void()>> queued;  // work not yet done, in order
  uint64_t marks = 0;
  int queued_copies = 0;
  int executes = 0, recorded = 0, replayed = 0, forgotten = 0;
  std::mutex mutex;
  std::set<const void*> buffers;
  std::set<const void*> staging;
  int uploads_from_staging = 0;
  bool patchify = false;
  std::string description;
  bool owns(const void* p) {
    std::lock_guard<std::mutex> lock(mutex);
    return buffers.count(p) != 0;
  }
};

float flip(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits = ~bits;
  std::memcpy(&v, &bits, 4);
  return v;
}

vit_status create(const vit_backend_config* config, void** context, char*, size_t) {
  auto* ctx = new Context;
  ctx->patchify = vit_plugin::option(*config, "patchify", "false") == "true";
  ctx->record = vit_plugin::option(*config, "record", "false");
  ctx->queue = vit_plugin::option(*config, "queue", "false") == "true";
  *context = ctx;
  return VIT_STATUS_OK;
}

void destroy(void* context) { delete static_cast<Context*>(context); }

vit_status supports(void* context, const vit_node* node, char* message, size_t size) {
  if (node->op == VIT_OP_PATCHIFY && !static_cast<Context*>(context)->patchify) {
    vit_plugin::write_message(message, size, "patchify only with the option patchify=true");
    return VIT_STATUS_UNSUPPORTED;
  }
  if (node->op == VIT_OP_LINEAR && !(VIT_INPUT_IS_CONSTANT(node, 1))) {
    vit_plugin::write_message(message, size, "weights must be constants");
    return VIT_STATUS_UNSUPPORTED;
  }
  return VIT_STATUS_OK;
}

// An activation's values, read back from device form.
std::vector<float> read(Context& ctx, const vit_node& n, int i) {
  const vit_tensor& t = n.inputs[i];
  const float* p = static_cast<const float*>(t.data);
  std::vector<float> v(static_cast<size_t>(vit_plugin::element_count(t)));
  if (VIT_INPUT_IS_CONSTANT(&n, i)) {
    if (ctx.owns(p)) throw std::runtime_error("a constant came in device memory");
    std::memcpy(v.data(), p, v.size() * 4);
    return v;
  }
  if (!ctx.owns(p)) throw std::runtime_error(std::string("input ") + std::to_string(i) + " of " + n.name + " is not in device memory");
  for (size_t k = 0; k < v.size(); ++k) v[k] = flip(p[k]);
  return v;
}

// Runs one node on this device's memory (bit-inverted floats).
void compute(Context& ctx, const vit_node& n) {
  float* y = static_cast<float*>(n.outputs[0].data);
  if (!ctx.owns(y)) throw std::runtime_error(std::string("the output of ") + n.name + " is not in device memory");
  std::vector<float> x = read(ctx, n, 0), out(static_cast<size_t>(vit_plugin::element_count(n.outputs[0])));
  if (n.op == VIT_OP_LINEAR) {
    std::vector<float> w = read(ctx, n, 1), b = n.n_inputs > 2 ? read(ctx, n, 2) : std::vector<float>();
    const int64_t k = n.inputs[0].shape[n.inputs[0].rank - 1], cols = n.inputs[1].shape[0];
    const int64_t rows = static_cast<int64_t>(x.size()) / k;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        double acc = b.empty() ? 0.0 : b[c];
        for (int64_t i = 0; i < k; ++i) acc += double(x[r * k + i]) * w[c * k + i];
        out[r * cols + c] = static_cast<float>(acc);
      }
  } else if (n.op == VIT_OP_PATCHIFY) {  // [n, c, h, w] -> [n, patches, c p p]
    const vit_tensor& t = n.inputs[0];
    const int64_t c = t.shape[1], h = t.shape[2], w = t.shape[3], p = n.ints[0], gw = w / p, grid = (h / p) * gw;
    const int64_t row = c * p * p;
    for (size_t i = 0; i < out.size(); ++i) {
      const int64_t e = static_cast<int64_t>(i) % row, g = (static_cast<int64_t>(i) / row) % grid,
                    b = static_cast<int64_t>(i) / (row * grid);
      const int64_t ch = e / (p * p), yy = (g / gw) * p + (e / p) % p, xx = (g % gw) * p + e % p;
      out[i] = x[static_cast<size_t>(((b * c + ch) * h + yy) * w + xx)];
    }
  } else if (n.op == VIT_OP_GELU) {
    for (size_t i = 0; i < x.size(); ++i) out[i] = static_cast<float>(0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0))));
  } else {
    std::vector<float> b = read(ctx, n, 1);
    for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] + b[i % b.size()];
  }
  for (size_t i = 0; i < out.size(); ++i) y[i] = flip(out[i]);
}

// Work to do now, or with queue=true when something waits for it.
void later(Context& ctx, std::function<void()> work) {
  if (ctx.queue) ctx.queued.push_back(std::move(work));
  else work();
}

// Does the queued work.
void drain(Context& ctx) {
  while (!ctx.queued.empty()) {
    std::function<void()> work = std::move(ctx.queued.front());
    ctx.queued.pop_front();
    work();
  }
}

std::shared_ptr<Recorded> keep(const vit_node& node) {
  auto r = std::make_shared<Recorded>();
  r->node = node;
  r->inputs.assign(node.inputs, node.inputs + node.n_inputs);
  r->outputs.assign(node.outputs, node.outputs + node.n_outputs);
  r->name = node.name;
  r->node.inputs = r->inputs.data();
  r->node.outputs = r->outputs.data();
  r->node.name = r->name.c_str();
  return r;
}

vit_status execute(void* context, void*, const vit_node* node, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto& ctx = *static_cast<Context*>(context);
    ++ctx.executes;
    std::shared_ptr<Recorded> r = keep(*node);
    if (ctx.recording) ctx.current.push_back(std::move(r));
    else later(ctx, [&ctx, r] { compute(ctx, r->node); });
    return VIT_STATUS_OK;
  });
}

void replay(Context& ctx, const std::vector<std::shared_ptr<Recorded>>& run) {
  for (const auto& r : run) later(ctx, [&ctx, r] { compute(ctx, r->node); });
}

vit_status sequence_begin(void* context, uint64_t key, int32_t* replayed, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto& ctx = *static_cast<Context*>(context);
    *replayed = 0;
    if (ctx.record == "false") return VIT_STATUS_OK;
    auto found = ctx.recordings.find(key);
    *replayed = found != ctx.recordings.end();
    if (*replayed) {
      replay(ctx, found->second);
      ++ctx.replayed;
    } else {
      ctx.recording = true;
      ctx.current.clear();
    }
    return VIT_STATUS_OK;
  });
}

vit_status sequence_end(void* context, uint64_t key, int32_t* rerun, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto& ctx = *static_cast<Context*>(context);
    *rerun = 0;
    if (!ctx.recording) return VIT_STATUS_OK;  // a replay
    ctx.recording = false;
    if (ctx.record == "fail") {
      *rerun = 1;
      return VIT_STATUS_OK;
    }
    replay(ctx, ctx.current);  // a graph's capture runs nothing until it is launched
    ctx.recordings[key] = std::move(ctx.current);
    ++ctx.recorded;
    return VIT_STATUS_OK;
  });
}

void sequence_forget(void* context, uint64_t key) {
  auto& ctx = *static_cast<Context*>(context);
  ctx.forgotten += static_cast<int>(ctx.recordings.erase(key));
}


vit_status alloc(void* context, size_t bytes, int32_t kind, void** data, char* message, size_t size) {
  auto& ctx = *static_cast<Context*>(context);
  *data = std::malloc(bytes ? bytes : 1);
  if (!*data) {
    vit_plugin::write_message(message, size, "out of memory");
    return VIT_STATUS_ERROR;
  }
  std::lock_guard<std::mutex> lock(ctx.mutex);
  (kind == VIT_ALLOC_HOST_STAGING ? ctx.staging : ctx.buffers).insert(*data);
  return VIT_STATUS_OK;
}

void free_buffer(void* context, void* data, int32_t kind) {
  auto& ctx = *static_cast<Context*>(context);
  drain(ctx);  // queued work may use it
  std::lock_guard<std::mutex> lock(ctx.mutex);
  if ((kind == VIT_ALLOC_HOST_STAGING ? ctx.staging : ctx.buffers).erase(data) != 1) std::abort();  // not ours, or twice
  std::free(data);
}

const char* describe(void* context) {
  auto& ctx = *static_cast<Context*>(context);
  std::lock_guard<std::mutex> lock(ctx.mutex);
  ctx.description = "fakedev: " + std::to_string(ctx.staging.size()) + " staging buffer(s) out, " +
                    std::to_string(ctx.uploads_from_staging) + " upload(s) from staging";
  if (ctx.queue)
    ctx.description += "; " + std::to_string(ctx.marks) + " mark(s), " + std::to_string(ctx.queued_copies) +
                       " queued copies";
  if (ctx.record != "false")
    ctx.description += "; " + std::to_string(ctx.executes) + " execute(s), " + std::to_string(ctx.recorded) +
                       " run(s) recorded, " + std::to_string(ctx.replayed) + " replayed, " +
                       std::to_string(ctx.forgotten) + " forgotten";
  return ctx.description.c_str();
}

vit_status copy(void* context, void* dst, const void* src, size_t bytes, int32_t kind, char* message, size_t size) {
  auto& ctx = *static_cast<Context*>(context);
  return vit_plugin::guard(message, size, [&] {
    const bool to_host = kind == VIT_COPY_DEVICE_TO_HOST || kind == VIT_COPY_DEVICE_TO_HOST_QUEUED;
    const bool queued = kind == VIT_COPY_HOST_TO_DEVICE_QUEUED || kind == VIT_COPY_DEVICE_TO_HOST_QUEUED;
    if (!ctx.owns(to_host ? src : dst)) throw std::runtime_error("copy to or from memory that is not this device's");
    bool from_staging = false;
    {
      std::lock_guard<std::mutex> lock(ctx.mutex);
      if (kind == VIT_COPY_DEVICE_TO_HOST_QUEUED && !ctx.staging.count(dst))
        throw std::runtime_error("a queued copy to host memory that is not this device's staging");
      from_staging = !to_host && kind != VIT_COPY_DEVICE_TO_DEVICE && ctx.staging.count(src);
      if (from_staging) ++ctx.uploads_from_staging;
    }
    // A queued upload from other memory reads its source now (as CUDA does from pageable memory).
    std::shared_ptr<std::vector<float>> source;
    if (kind == VIT_COPY_HOST_TO_DEVICE_QUEUED && !from_staging) {
      source = std::make_shared<std::vector<float>>(static_cast<const float*>(src), static_cast<const float*>(src) + bytes / 4);
      src = source->data();
    }
    auto work = [src, dst, bytes, kind, source] {
      const float* s = static_cast<const float*>(src);
      float* d = static_cast<float*>(dst);
      for (size_t i = 0; i < bytes / 4; ++i) d[i] = kind == VIT_COPY_DEVICE_TO_DEVICE ? s[i] : flip(s[i]);
    };
    if (queued) ++ctx.queued_copies;
    // A plain copy to the host waits for the work before it; one from the host reads its
    // source now (the host may reuse it once we return). The rest waits in the queue.
    if (kind == VIT_COPY_DEVICE_TO_HOST || kind == VIT_COPY_HOST_TO_DEVICE) {
      drain(ctx);
      work();
    } else {
      later(ctx, work);
    }
    return VIT_STATUS_OK;
  });
}

vit_status mark(void* context, uint64_t* token, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto& ctx = *static_cast<Context*>(context);
    *token = ++ctx.marks;
    return VIT_STATUS_OK;
  });
}

vit_status synchronize(void* context, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    drain(*static_cast<Context*>(context));
    return VIT_STATUS_OK;
  });
}

// Waits for everything queued, not just up to the mark: a GPU runs ahead of the host's
// waits, and a host that lets a later batch overwrite what an earlier one left should see it.
vit_status wait_mark(void* context, uint64_t, char* message, size_t size) { return synchronize(context, message, size); }

int32_t score(char* message, size_t size) {
  vit_plugin::write_message(message, size, "a test device: never picked by auto");
  return 0;
}

vit_backend_api table() {
  vit_backend_api api = vit_plugin::make_table("fakedev", "1.0", kOps);
  api.create = create;
  api.destroy = destroy;
  api.describe = describe;
  api.supports = supports;
  api.execute = execute;
  api.memory = VIT_MEMORY_DEVICE;
  api.alloc = alloc;
  api.free = free_buffer;
  api.copy = copy;
  api.score = score;
  api.sequence_begin = sequence_begin;
  api.sequence_end = sequence_end;
  api.sequence_forget = sequence_forget;
  api.mark = mark;
  api.wait_mark = wait_mark;
  api.synchronize = synchronize;
  return api;
}

}  // namespace

VIT_PLUGIN_EXPORT(table())
