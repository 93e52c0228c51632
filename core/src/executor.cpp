#include "vitbatch/executor.hpp"

#include "lane_pool.hpp"
#include "vit_plugin_helpers.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/vit_graph.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>

namespace vitbatch {
namespace {

// 64-byte aligned host storage: what vectorised kernels want from an activation buffer.
struct AlignedBuffer {
  void* data = nullptr;
  explicit AlignedBuffer(size_t bytes) {
    bytes = ((bytes + 63) / 64) * 64;
    data = std::aligned_alloc(64, bytes ? bytes : 64);
    if (!data) throw Error("out of memory allocating " + std::to_string(bytes) + " bytes of activations");
  }
  ~AlignedBuffer() { std::free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
};

vit_tensor describe(const Value& v, void* data) {
  return vit_plugin::dense_tensor(v.shape, data, static_cast<int32_t>(v.dtype));
}

size_t value_bytes(const Value& v) {
  return static_cast<size_t>(element_count(v.shape)) * vit_plugin::dtype_size(static_cast<int32_t>(v.dtype));
}

// A slot is one value's copy in one memory domain (0 = host, else a device backend's). Slots
// share buffers by liveness within their domain: a buffer returns to the domain's pool after
// the last step that reads its slot.
struct SlotLife {
  int domain = 0;
  size_t bytes = 0;
  int defined = -1;   // the step that writes it (-1: before the first step)
  int last_use = -1;  // the last step that reads it (INT_MAX: read after the last step)
};

struct Pools {
  std::vector<int> buffer_of;                   // per slot
  std::vector<std::pair<int, size_t>> buffers;  // (domain, bytes)
};

Pools assign_pools(const std::vector<SlotLife>& slots, int steps) {
  Pools p;
  p.buffer_of.assign(slots.size(), -1);
  std::vector<int> free_buffers;
  auto take = [&](int domain, size_t bytes) {
    int best = -1;
    for (int b : free_buffers)
      if (p.buffers[b].first == domain && p.buffers[b].second >= bytes &&
          (best < 0 || p.buffers[b].second < p.buffers[best].second))
        best = b;
    if (best < 0) {
      p.buffers.emplace_back(domain, bytes);
      return static_cast<int>(p.buffers.size() - 1);
    }
    free_buffers.erase(std::find(free_buffers.begin(), free_buffers.end(), best));
    return best;
  };
  for (int step = -1; step < steps; ++step) {
    // Outputs first, then what was read for the last time: a step never writes over what
    // it reads.
    for (size_t s = 0; s < slots.size(); ++s)
      if (slots[s].defined == step) p.buffer_of[s] = take(slots[s].domain, slots[s].bytes);
    for (size_t s = 0; s < slots.size(); ++s)
      if (slots[s].last_use == step && p.buffer_of[s] >= 0) free_buffers.push_back(p.buffer_of[s]);
  }
  return p;
}

}  // namespace

size_t Executor::estimate_activation_bytes(const Model& model, int64_t batch) {
  // Activations grow linearly with the batch: plan one image on the host with every
  // composite lowered (the largest form: attention's full score matrix), then scale.
  Graph g = lower_composites(build_vit_graph(model, 1), [](const Graph&, const Node&) { return false; });
  std::vector<SlotLife> slots;
  std::vector<int> slot_of(g.values().size(), -1);
  for (int id : g.inputs()) slot_of[id] = static_cast<int>(slots.size()), slots.push_back({0, value_bytes(g.value(id)), -1, -1});
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    const Node& n = g.nodes()[i];
    for (int id : n.inputs)
      if (slot_of[id] >= 0) slots[slot_of[id]].last_use = static_cast<int>(i);
    slot_of[n.output] = static_cast<int>(slots.size());
    slots.push_back({0, value_bytes(g.value(n.output)), static_cast<int>(i), static_cast<int>(i)});
  }
  for (int id : g.outputs()) slots[slot_of[id]].last_use = INT_MAX;
  size_t bytes = 0;
  for (const auto& buffer : assign_pools(slots, static_cast<int>(g.nodes().size())).buffers) bytes += buffer.second;
  return bytes * static_cast<size_t>(batch);
}

// What a node looks like across the ABI: its tensors and value ids live here, so the vit_node
// that points into them stays valid as long as this does (it is never copied after fill()).
struct NodeView {
  std::vector<vit_tensor> inputs, outputs;
  std::vector<int32_t> ids;
  vit_node node{};

  void fill(const Graph& g, const Node& n, const std::function<void*(int)>& data) {
    inputs.clear();
    outputs.clear();
    ids.clear();
    for (int id : n.inputs) {
      inputs.push_back(describe(g.value(id), data ? data(id) : nullptr));
      ids.push_back(id);
    }
    outputs.push_back(describe(g.value(n.output), data ? data(n.output) : nullptr));
    node = vit_node{};
    node.struct_size = sizeof(vit_node);
    node.op = static_cast<int32_t>(n.op);
    node.n_inputs = static_cast<int32_t>(inputs.size());
    node.inputs = inputs.data();
    node.n_outputs = 1;
    node.outputs = outputs.data();
    std::copy(n.params.ints.begin(), n.params.ints.end(), node.ints);
    std::copy(n.params.floats.begin(), n.params.floats.end(), node.floats);
    node.name = n.name.c_str();
    for (size_t i = 0; i < n.inputs.size() && i < 64; ++i)
      if (g.value(n.inputs[i]).is_constant()) node.constant_inputs |= uint64_t{1} << i;
    node.input_ids = ids.data();
    node.output_id = n.output;
  }
};

struct Executor::Plan {
  Graph graph;
  std::vector<std::unique_ptr<AlignedBuffer>> host_buffers;
  std::vector<std::pair<Backend*, void*>> device_buffers;  // freed by their backend
  struct Step {
    Backend* backend = nullptr;  // runs the node(s), or does the copy
    // One node, or a run a backend claimed (then `fused` holds the run's nodes and `view`
    // the VIT_OP_FUSED node over them):
    void* state = nullptr;
    bool prepared = false;
    NodeView view;
    std::vector<NodeView> fused;
    std::vector<vit_node> fused_nodes;
    std::string fused_name;
    // Or a copy between domains (src null: the caller's pixels):
    bool is_copy = false;
    void* dst = nullptr;
    const void* src = nullptr;
    size_t bytes = 0;
    vit_copy_kind kind = VIT_COPY_HOST_TO_DEVICE;
    std::string what;  // for placement()
    // The first step of a run of steps its backend records (CUDA graphs) and replays:
    // the run's key, and the index one past its last step.
    uint64_t sequence = 0;
    size_t sequence_end = 0;
  };
  std::vector<Step> steps;
  void* input_host = nullptr;       // where the pixels go when a host node reads them
  Backend* output_owner = nullptr;  // set when the logits live on a device
  const void* output_data = nullptr;
  size_t input_bytes = 0, output_bytes = 0;
  uint64_t last_used = 0;  // for evicting the least recently used plan
  // The backend that holds the output has a queue, and the pixels go to it: start() keeps
  // batches of this plan in flight. (Steps on other backends in between still run, their
  // copies waiting for the queue, as in run().)
  bool queued = false;
};

namespace {
// Recording keys, unique in the process (several executors may share a backend context):
// a plan's number in the high bits, the run's first step in the low 20.
std::atomic<uint64_t> next_plan_number{1};
}  // namespace

Executor::Executor(const Model& model, std::vector<Backend*> backends)
    : model_(model), backends_(std::move(backends)) {
  if (backends_.empty()) throw Error("no backend to run on");
}

Executor::~Executor() {
  try {
    finish_all();
  } catch (...) {  // a failed batch: its buffers still go back below
  }
  for (Staging& s : logit_staging_)
    if (s.data) s.owner->free(s.data, VIT_ALLOC_HOST_STAGING);
  lane_pool_.reset();  // the lanes' threads end before their executors go
  for (auto& [batch, plan] : plans_) release(*plan);
}

PixelBuffer& PixelBuffer::operator=(PixelBuffer&& other) noexcept {
  if (this != &other) {
    if (owner_) owner_->free(data_, VIT_ALLOC_HOST_STAGING);
    data_ = other.data_;
    floats_ = other.floats_;
    owner_ = other.owner_;
    plain_ = std::move(other.plain_);
    other.data_ = nullptr, other.floats_ = 0, other.owner_ = nullptr;
  }
  return *this;
}

PixelBuffer::~PixelBuffer() {
  if (owner_) owner_->free(data_, VIT_ALLOC_HOST_STAGING);
}

PixelBuffer Executor::pixel_buffer(size_t floats) {
  PixelBuffer buffer;
  buffer.floats_ = floats;
  for (Backend* b : backends_) {
    if (!b->device_memory()) continue;
    try {
      buffer.data_ = static_cast<float*>(b->alloc(floats * sizeof(float), VIT_ALLOC_HOST_STAGING));
      buffer.owner_ = b;
      return buffer;
    } catch (const Error&) {
      break;  // no staging memory to give (or none left): plain memory does, only slower
    }
  }
  buffer.plain_.resize(floats);
  buffer.data_ = buffer.plain_.data();
  return buffer;
}

void Executor::release(Plan& plan) {
  for (auto& step : plan.steps)
    if (step.sequence) step.backend->sequence_forget(step.sequence);
  for (auto& step : plan.steps)
    if (step.prepared) step.backend->release(step.state);
  for (auto& [owner, data] : plan.device_buffers) owner->free(data, VIT_ALLOC_DEVICE);
  plan.device_buffers.clear();
}

Executor::Plan& Executor::plan_for(int64_t batch) {
  auto found = plans_.find(batch);
  if (found != plans_.end()) {
    found->second->last_used = ++uses_;
    return *found->second;
  }
  if (plans_.size() >= kMaxPlans) {
    auto oldest = std::min_element(plans_.begin(), plans_.end(), [](const auto& a, const auto& b) {
      return a.second->last_used < b.second->last_used;
    });
    release(*oldest->second);
    plans_.erase(oldest);
  }

  auto plan = std::make_unique<Plan>();
  Plan& P = *plan;
  Graph full = build_vit_graph(model_, batch);
  const bool observed = observer_ || attention_observer_;  // every node runs alone, to be seen
  auto claimed = [&](const Graph& g, const Node& n) {
    if (observed) return false;
    NodeView v;
    v.fill(g, n, nullptr);
    for (Backend* b : backends_)
      if (b->supports(v.node, nullptr)) return true;
    return false;
  };
  P.graph = lower_composites(full, claimed);
  const Graph& g = P.graph;
  const int n_nodes = static_cast<int>(g.nodes().size());

  // 1. Units: runs of nodes a backend claims as one fused step, else single nodes placed on
  // the first backend that accepts them.
  struct Unit {
    int first = 0, count = 1;
    Backend* backend = nullptr;
  };
  std::vector<Unit> units;
  {
    std::vector<NodeView> views(g.nodes().size());
    std::vector<vit_node> nodes(g.nodes().size());
    for (int i = 0; i < n_nodes; ++i) {
      views[i].fill(g, g.nodes()[i], nullptr);
      nodes[i] = views[i].node;
    }
    for (int i = 0; i < n_nodes;) {
      Unit u{i, 1, nullptr};
      for (Backend* b : backends_) {
        if (observed) break;
        int length = b->claim(&nodes[i], n_nodes - i);
        if (length >= 2) {
          u = {i, length, b};
          break;
        }
      }
      if (!u.backend) {
        std::string reasons;
        for (Backend* b : backends_) {
          std::string why;
          if (b->supports(nodes[i], &why)) {
            u.backend = b;
            break;
          }
          reasons += " " + b->name() + ": " + why + ";";
        }
        const Node& n = g.nodes()[i];
        if (!u.backend) throw Error("no backend accepts node '" + n.name + "' (" + op_name(n.op) + "):" + reasons);
      }
      units.push_back(u);
      i += u.count;
    }
  }
  std::vector<int> unit_of(g.nodes().size());
  for (size_t u = 0; u < units.size(); ++u)
    for (int k = 0; k < units[u].count; ++k) unit_of[units[u].first + k] = static_cast<int>(u);
  // Values produced inside a unit and read only there (nor a graph output) get no buffer.
  std::vector<bool> crosses(g.values().size(), false);
  for (int i = 0; i < n_nodes; ++i)
    for (int id : g.nodes()[i].inputs) {
      const Value& v = g.value(id);
      if (v.producer >= 0 && unit_of[v.producer] != unit_of[i]) crosses[id] = true;
    }
  for (int id : g.outputs()) crosses[id] = true;
  // The values a unit reads from outside and those it leaves for later, in order, once each.
  auto unit_inputs = [&](const Unit& u) {
    std::vector<int> ids;
    for (int k = 0; k < u.count; ++k)
      for (int id : g.nodes()[u.first + k].inputs) {
        int producer = g.value(id).producer;
        bool outside = producer < 0 || unit_of[producer] != unit_of[u.first];
        if (outside && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
      }
    return ids;
  };
  auto unit_outputs = [&](const Unit& u) {
    std::vector<int> ids;
    for (int k = 0; k < u.count; ++k) {
      int id = g.nodes()[u.first + k].output;
      if (u.count == 1 || crosses[id]) ids.push_back(id);
    }
    return ids;
  };

  // 2. Memory domains: the host (0) for host-memory backends, one per device backend.
  std::vector<Backend*> domain_owner{nullptr};
  auto domain_of = [&](Backend* b) {
    if (!b->device_memory()) return 0;
    for (size_t d = 1; d < domain_owner.size(); ++d)
      if (domain_owner[d] == b) return static_cast<int>(d);
    domain_owner.push_back(b);
    return static_cast<int>(domain_owner.size() - 1);
  };

  // 3. Steps: the units in order, with a copy before the first reader of a value in a domain
  // the value does not live in yet. Device to device goes through the host.
  const int input = g.inputs().at(0), output = g.outputs().at(0);
  std::vector<int> home(g.values().size(), 0);
  std::vector<std::vector<int>> slot(g.values().size());  // per value, per domain: slot index or -1
  std::vector<SlotLife> slots;
  auto slot_in = [&](int value, int domain) -> int& {
    std::vector<int>& s = slot[value];
    if (s.size() <= static_cast<size_t>(domain)) s.resize(domain + 1, -1);
    return s[domain];
  };
  struct Pending {
    bool is_copy;
    size_t unit;
    int value, from, to;  // copy: value from domain to domain (from -1: the caller's pixels)
  };
  std::vector<Pending> order;
  auto reads = [&](int value, int domain, int step) {
    SlotLife& life = slots[slot_in(value, domain)];
    life.last_use = std::max(life.last_use, step);
  };
  auto add_copy = [&](int value, int from, int to) {
    int step = static_cast<int>(order.size());
    order.push_back({true, 0, value, from, to});
    if (from >= 0) reads(value, from, step);
    slot_in(value, to) = static_cast<int>(slots.size());
    slots.push_back({to, value_bytes(g.value(value)), step, step});
  };
  for (size_t u = 0; u < units.size(); ++u) {
    int d = domain_of(units[u].backend);
    std::vector<int> ins = unit_inputs(units[u]);
    for (int id : ins) {
      if (g.value(id).is_constant() || slot_in(id, d) >= 0) continue;
      if (id == input) {
        // The pixels are the caller's: a host slot only if a host unit reads them, and
        // straight from the caller to a device.
        if (d == 0) {
          slot_in(input, 0) = static_cast<int>(slots.size());
          slots.push_back({0, value_bytes(g.value(input)), -1, -1});
        } else {
          add_copy(input, -1, d);
        }
        continue;
      }
      if (home[id] != 0 && d != 0 && slot_in(id, 0) < 0) add_copy(id, home[id], 0);
      add_copy(id, home[id] != 0 && d != 0 ? 0 : home[id], d);
    }
    // Copies are all in place: the unit's own step index is final now.
    int step = static_cast<int>(order.size());
    for (int id : ins)
      if (!g.value(id).is_constant()) reads(id, d, step);
    for (int id : unit_outputs(units[u])) {
      home[id] = d;
      slot_in(id, d) = static_cast<int>(slots.size());
      slots.push_back({d, value_bytes(g.value(id)), step, step});
    }
    order.push_back({false, u, -1, 0, 0});
  }
  slots[slot_in(output, home[output])].last_use = INT_MAX;
  // The input's buffers are never recycled within a run, so that run(nullptr) finds the
  // previous batch's pixels where they were put.
  for (int s : slot[input])
    if (s >= 0) slots[s].last_use = INT_MAX;

  // 4. Buffers, per domain.
  Pools pools = assign_pools(slots, static_cast<int>(order.size()));
  std::vector<void*> buffer_data;
  for (const auto& [domain, bytes] : pools.buffers) {
    if (domain == 0) {
      P.host_buffers.push_back(std::make_unique<AlignedBuffer>(bytes));
      buffer_data.push_back(P.host_buffers.back()->data);
    } else {
      Backend* owner = domain_owner[domain];
      buffer_data.push_back(owner->alloc(bytes, VIT_ALLOC_DEVICE));
      P.device_buffers.emplace_back(owner, buffer_data.back());
    }
  }
  auto data_of = [&](int value, int domain) -> void* {
    if (g.value(value).is_constant()) return const_cast<void*>(g.value(value).data);
    if (static_cast<size_t>(domain) >= slot[value].size()) return nullptr;
    int s = slot[value][domain];
    return s >= 0 ? buffer_data[pools.buffer_of[s]] : nullptr;
  };
  P.input_bytes = value_bytes(g.value(input));
  P.output_bytes = value_bytes(g.value(output));
  P.input_host = data_of(input, 0);
  if (home[output] != 0) P.output_owner = domain_owner[home[output]];
  P.output_data = data_of(output, home[output]);

  // 5. Steps with their tensors, then prepare each unit once (with its constants).
  P.steps.resize(order.size());
  for (size_t k = 0; k < order.size(); ++k) {
    const Pending& o = order[k];
    Plan::Step& step = P.steps[k];
    if (o.is_copy) {
      step.is_copy = true;
      step.bytes = value_bytes(g.value(o.value));
      step.dst = data_of(o.value, o.to);
      step.src = o.from < 0 ? nullptr : data_of(o.value, o.from);
      step.kind = o.to != 0 ? VIT_COPY_HOST_TO_DEVICE : VIT_COPY_DEVICE_TO_HOST;
      step.backend = domain_owner[o.to != 0 ? o.to : o.from];
      step.what = g.value(o.value).name + (o.to != 0 ? " to " : " from ") + step.backend->name();
      continue;
    }
    const Unit& u = units[o.unit];
    const int d = domain_of(u.backend);
    step.backend = u.backend;
    if (u.count == 1) {
      const Node& n = g.nodes()[u.first];
      step.view.fill(g, n, [&](int id) { return data_of(id, d); });
      step.what = op_name(n.op) + std::string("  ") + n.name;
      continue;
    }
    // A claimed run: each node with the data of the values that cross its edge, NULL inside.
    step.fused.resize(u.count);
    step.fused_nodes.resize(u.count);
    std::string ops;
    for (int i = 0; i < u.count; ++i) {
      const Node& n = g.nodes()[u.first + i];
      step.fused[i].fill(g, n, [&](int id) -> void* {
        const Value& v = g.value(id);
        bool inside = v.producer >= u.first && v.producer < u.first + u.count && !crosses[id];
        return inside ? nullptr : data_of(id, d);
      });
      step.fused_nodes[i] = step.fused[i].node;
      ops += (i ? "+" : "") + std::string(op_name(n.op));
      step.fused_name += (i ? " " : "") + n.name;
    }
    step.what = "fused(" + ops + ")  " + step.fused_name;
    NodeView& v = step.view;
    for (int id : unit_inputs(u)) {
      v.inputs.push_back(describe(g.value(id), data_of(id, d)));
      v.ids.push_back(id);
    }
    std::vector<int> outs = unit_outputs(u);
    for (int id : outs) v.outputs.push_back(describe(g.value(id), data_of(id, d)));
    v.node.struct_size = sizeof(vit_node);
    v.node.op = VIT_OP_FUSED;
    v.node.n_inputs = static_cast<int32_t>(v.inputs.size());
    v.node.inputs = v.inputs.data();
    v.node.n_outputs = static_cast<int32_t>(v.outputs.size());
    v.node.outputs = v.outputs.data();
    for (size_t i = 0; i < v.ids.size() && i < 64; ++i)
      if (g.value(v.ids[i]).is_constant()) v.node.constant_inputs |= uint64_t{1} << i;
    v.node.input_ids = v.ids.data();
    v.node.output_id = outs.empty() ? -1 : outs.front();
    v.node.name = step.fused_name.c_str();
    v.node.n_fused = u.count;
    v.node.fused = step.fused_nodes.data();
  }
  for (Plan::Step& step : P.steps) {
    if (step.is_copy) continue;
    step.state = step.backend->prepare(step.view.node);
    step.prepared = true;
    // Backends that pack weights have their own copy now: let the file's pages go, so the
    // model is not resident twice (a reader that needs them faults them back in).
    model_.weights.drop_resident_pages();
  }
  // 6. Runs of consecutive steps on one backend that records them (a CUDA graph launches
  // the ~160 kernels of a ViT-Ti batch at once, where one image at a time is bound by the
  // launches). Not with an observer: it reads host memory between steps.
  if (!observer_ && !attention_observer_) {
    const uint64_t number = next_plan_number++;
    for (size_t k = 0; k < P.steps.size();) {
      size_t end = k;
      while (end < P.steps.size() && !P.steps[end].is_copy && P.steps[end].backend == P.steps[k].backend) ++end;
      if (end - k >= 2 && P.steps[k].backend->records()) {
        P.steps[k].sequence = (number << 20) + k;
        P.steps[k].sequence_end = end;
      }
      k = std::max(end, k + 1);
    }
  }
  P.queued = P.output_owner && P.output_owner->queues() && !observer_ && !attention_observer_ &&
             std::all_of(P.steps.begin(), P.steps.end(),
                         [&](const Plan::Step& s) { return !s.is_copy || s.src || s.backend == P.output_owner; });
  P.last_used = ++uses_;
  return *(plans_[batch] = std::move(plan));
}

void Executor::set_lanes(const std::vector<std::vector<Backend*>>& lanes) {
  if (!plans_.empty() || !lanes_.empty()) throw Error("internal: set_lanes() after the first run");
  if (lanes.size() < 2) return;
  for (const auto& backends : lanes) {
    if (backends.size() != backends_.size()) throw Error("internal: a lane's backends differ from the executor's");
    for (Backend* b : backends)
      if (!b->concurrent_contexts()) throw Error("internal: backend '" + b->name() + "' cannot run in lanes");
    lanes_.push_back(std::make_unique<Executor>(model_, backends));
  }
  lane_pool_ = std::make_unique<LanePool>(static_cast<int>(lanes_.size()));
}

bool Executor::run_lanes(const float* pixels, int64_t n, float* logits) {
  if (lanes_.empty() || n < 2 || observer_ || attention_observer_) return false;
  if (!pixels) {
    if (lane_batch_ != n) throw Error("no earlier input of this batch size to run again");
    pixels = lane_pixels_;
  }
  lane_pixels_ = pixels;
  lane_batch_ = n;
  const ViTConfig& c = model_.config;
  const int64_t image = c.in_chans * c.image_size * c.image_size, width = output_width();
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  lane_pool_->run([&](int lane) {
    for (int64_t i = next++; i < n && !failed; i = next++) {
      try {
        lanes_[lane]->run(pixels + i * image, 1, logits + i * width);
      } catch (...) {
        failed = true;  // the other lanes take no new image
        throw;
      }
    }
  });
  return true;
}

void Executor::run(const float* pixels, int64_t n, float* logits) {
  finish_all();
  if (run_lanes(pixels, n, logits)) return;
  if (!pixels && plans_.find(n) == plans_.end()) throw Error("no earlier input of this batch size to run again");
  Plan& plan = plan_for(n);
  queue_steps(plan, pixels, false);
  // A copy to the host returns when the backend's earlier work is done.
  if (plan.output_owner) plan.output_owner->copy(logits, plan.output_data, plan.output_bytes, VIT_COPY_DEVICE_TO_HOST);
  else std::memcpy(logits, plan.output_data, plan.output_bytes);
}

void Executor::start(const float* pixels, int64_t n, float* logits) {
  auto found = plans_.find(n);
  if (found == plans_.end() || !found->second->queued || !lanes_.empty()) {
    // Building a plan may evict one with a batch in flight; elsewhere batches run at once.
    finish_all();
    run(pixels, n, logits);
    return;
  }
  Plan& plan = plan_for(n);
  if (in_flight_.size() >= 2) finish();
  Staging& staging = logit_staging_[next_staging_];  // its batch, if any, is finished
  next_staging_ ^= 1;
  if (staging.owner != plan.output_owner || staging.bytes < plan.output_bytes) {
    if (staging.data) staging.owner->free(staging.data, VIT_ALLOC_HOST_STAGING);
    staging = Staging{};
    staging.data = plan.output_owner->alloc(plan.output_bytes, VIT_ALLOC_HOST_STAGING);
    staging.owner = plan.output_owner;
    staging.bytes = plan.output_bytes;
  }
  queue_steps(plan, pixels, true);
  plan.output_owner->copy(staging.data, plan.output_data, plan.output_bytes, VIT_COPY_DEVICE_TO_HOST_QUEUED);
  in_flight_.push_back({plan.output_owner, plan.output_owner->mark(), staging.data, logits, plan.output_bytes});
}

void Executor::finish() {
  if (in_flight_.empty()) return;
  Pending p = in_flight_.front();
  in_flight_.pop_front();
  p.device->wait_mark(p.token);
  std::memcpy(p.logits, p.staged, p.bytes);
}

void Executor::finish_all() {
  while (!in_flight_.empty()) finish();
}

void Executor::queue_steps(Plan& plan, const float* pixels, bool queued) {
  if (plan.input_host && pixels) std::memcpy(plan.input_host, pixels, plan.input_bytes);
  for (size_t k = 0; k < plan.steps.size();) {
    Plan::Step& first = plan.steps[k];
    if (first.sequence) {  // a recorded run: replayed whole, or executed (and recorded)
      Backend* b = first.backend;
      if (!b->sequence_begin(first.sequence)) {
        run_steps(plan, k, first.sequence_end, pixels, queued);
        if (b->sequence_end(first.sequence)) run_steps(plan, k, first.sequence_end, pixels, queued);
      } else if (b->sequence_end(first.sequence)) {
        throw Error("backend '" + b->name() + "' asked to rerun a replayed run");
      }
      k = first.sequence_end;
    } else {
      run_steps(plan, k, k + 1, pixels, queued);
      ++k;
    }
  }
}

void Executor::run_steps(Plan& plan, size_t first, size_t end, const float* pixels, bool queued) {
  for (size_t k = first; k < end; ++k) {
    Plan::Step& step = plan.steps[k];
    if (step.is_copy && !step.src && !pixels) continue;  // the input is still in place
    if (step.is_copy && !step.src)  // the caller's pixels: queued, they stay put until finish()
      step.backend->copy(step.dst, pixels, step.bytes, queued ? VIT_COPY_HOST_TO_DEVICE_QUEUED : step.kind);
    else if (step.is_copy)
      step.backend->copy(step.dst, step.src, step.bytes, step.kind);
    else step.backend->execute(step.state, step.view.node);
    if (observer_ && !step.is_copy && step.view.node.op == VIT_OP_LINEAR && !step.backend->device_memory()) {
      const vit_tensor& x = step.view.node.inputs[0];
      observer_(step.view.node.name, static_cast<const float*>(x.data), vit_plugin::element_count(x));
    }
    if (attention_observer_ && !step.is_copy && step.view.node.op == VIT_OP_SOFTMAX && !step.backend->device_memory()) {
      // "blocks.3.attn.core/softmax": the lowered attention's probabilities.
      const std::string name = step.view.node.name;
      const size_t end = name.find(".attn.core/softmax");
      if (name.rfind("blocks.", 0) == 0 && end != std::string::npos && end + 18 == name.size())
        attention_observer_(std::stoi(name.substr(7, end - 7)), static_cast<const float*>(step.view.node.outputs[0].data));
    }
  }
}

void Executor::observe_linear_inputs(LinearObserver observer) {
  if (!plans_.empty()) throw Error("internal: observe_linear_inputs() after the first run");
  observer_ = std::move(observer);
}

void Executor::observe_attention(AttentionObserver observer) {
  if (!plans_.empty()) throw Error("internal: observe_attention() after the first run");
  attention_observer_ = std::move(observer);
}

std::string Executor::placement(int64_t batch) {
  finish_all();
  Plan& plan = plan_for(batch);
  std::ostringstream os;
  for (size_t k = 0; k < plan.steps.size(); ++k) {
    const Plan::Step& step = plan.steps[k];
    if (step.sequence)
      os << "  " << step.backend->name() << "  the next " << step.sequence_end - k
         << " steps as one run it records (and replays whole)\n";
    if (step.is_copy) os << "  copy  " << step.what << "\n";
    else os << "  " << step.backend->name() << "  " << step.what << "\n";
  }
  return os.str();
}

}  // namespace vitbatch
