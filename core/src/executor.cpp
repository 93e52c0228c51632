#include "vitbatch/executor.hpp"

#include "vit_plugin_helpers.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/vit_graph.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace vitbatch {
namespace {

// 64-byte aligned float storage: what vectorised kernels want from an activation buffer.
struct AlignedBuffer {
  float* data = nullptr;
  size_t floats = 0;
  explicit AlignedBuffer(size_t n) : floats(n) {
    size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    data = static_cast<float*>(std::aligned_alloc(64, bytes ? bytes : 64));
    if (!data) throw Error("out of memory allocating " + std::to_string(bytes) + " bytes of activations");
  }
  ~AlignedBuffer() { std::free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
};

struct BufferAssignment {
  std::vector<size_t> capacity;  // floats, per buffer
  std::vector<int> buffer_of;    // per value id; -1 for constants
};

vit_tensor describe(const Value& v, void* data) {
  return vit_plugin::dense_tensor(v.shape, data, static_cast<int32_t>(v.dtype));
}

// Liveness: a value's buffer returns to the pool after its last reader has run.
BufferAssignment assign_buffers(const Graph& g) {
  std::vector<int> last_use(g.values().size(), -1);
  for (size_t i = 0; i < g.nodes().size(); ++i)
    for (int id : g.nodes()[i].inputs) last_use[id] = static_cast<int>(i);
  for (int id : g.outputs()) last_use[id] = static_cast<int>(g.nodes().size());

  BufferAssignment a;
  std::vector<size_t>& capacity = a.capacity;
  std::vector<int>& buffer_of = a.buffer_of;
  buffer_of.assign(g.values().size(), -1);
  std::vector<int> free_buffers;
  auto take = [&](size_t floats) {
    int best = -1;
    for (int b : free_buffers)
      if (capacity[b] >= floats && (best < 0 || capacity[b] < capacity[best])) best = b;
    if (best < 0) {
      capacity.push_back(floats);
      return static_cast<int>(capacity.size() - 1);
    }
    free_buffers.erase(std::find(free_buffers.begin(), free_buffers.end(), best));
    return best;
  };
  int input = g.inputs().at(0);
  buffer_of[input] = take(static_cast<size_t>(element_count(g.value(input).shape)));
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    const Node& n = g.nodes()[i];
    buffer_of[n.output] = take(static_cast<size_t>(element_count(g.value(n.output).shape)));
    for (int id : n.inputs)
      if (last_use[id] == static_cast<int>(i) && buffer_of[id] >= 0 &&
          std::find(free_buffers.begin(), free_buffers.end(), buffer_of[id]) == free_buffers.end())
        free_buffers.push_back(buffer_of[id]);
  }
  return a;
}

}  // namespace

size_t Executor::estimate_activation_bytes(const Model& model, int64_t batch) {
  // Activations grow linearly with the batch: plan one image with every composite lowered
  // (the largest form: attention's full score matrix), then scale.
  Graph g = lower_composites(build_vit_graph(model, 1), [](const Graph&, const Node&) { return false; });
  size_t floats = 0;
  for (size_t c : assign_buffers(g).capacity) floats += c;
  return floats * sizeof(float) * static_cast<size_t>(batch);
}

struct Executor::Plan {
  Graph graph;
  std::vector<std::unique_ptr<AlignedBuffer>> buffers;
  std::vector<float*> value_data;  // per value id: where it lives at run time
  struct Step {
    Backend* backend = nullptr;
    void* state = nullptr;
    std::vector<vit_tensor> inputs;
    std::vector<vit_tensor> outputs;
    vit_node node{};
  };
  std::vector<Step> steps;
  int input = -1, output = -1;
  uint64_t last_used = 0;  // for evicting the least recently used plan
};

Executor::Executor(const Model& model, std::vector<Backend*> backends)
    : model_(model), backends_(std::move(backends)) {
  if (backends_.empty()) throw Error("no backend to run on");
}

Executor::~Executor() {
  for (auto& [batch, plan] : plans_) release(*plan);
}

void Executor::release(Plan& plan) {
  for (auto& step : plan.steps) step.backend->release(step.state);
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
  auto node_view = [](const Graph& g, const Node& n, const std::vector<float*>* data,
                      std::vector<vit_tensor>& ins, std::vector<vit_tensor>& outs) {
    ins.clear();
    outs.clear();
    for (int id : n.inputs) {
      const Value& v = g.value(id);
      ins.push_back(describe(v, data ? (*data)[id] : nullptr));
    }
    outs.push_back(describe(g.value(n.output), data ? (*data)[n.output] : nullptr));
    vit_node node{};
    node.struct_size = sizeof(vit_node);
    node.op = static_cast<int32_t>(n.op);
    node.n_inputs = static_cast<int32_t>(ins.size());
    node.inputs = ins.data();
    node.n_outputs = 1;
    node.outputs = outs.data();
    std::copy(n.params.ints.begin(), n.params.ints.end(), node.ints);
    std::copy(n.params.floats.begin(), n.params.floats.end(), node.floats);
    node.name = n.name.c_str();
    return node;
  };

  Graph full = build_vit_graph(model_, batch);
  auto claimed = [&](const Graph& g, const Node& n) {
    std::vector<vit_tensor> ins, outs;
    vit_node node = node_view(g, n, nullptr, ins, outs);
    for (Backend* b : backends_)
      if (b->supports(node, nullptr)) return true;
    return false;
  };
  plan->graph = lower_composites(full, claimed);
  const Graph& g = plan->graph;

  plan->input = g.inputs().at(0);
  plan->output = g.outputs().at(0);
  BufferAssignment assigned = assign_buffers(g);
  const std::vector<size_t>& capacity = assigned.capacity;
  const std::vector<int>& buffer_of = assigned.buffer_of;
  for (size_t c : capacity) plan->buffers.push_back(std::make_unique<AlignedBuffer>(c));
  plan->value_data.assign(g.values().size(), nullptr);
  for (const Value& v : g.values())
    plan->value_data[v.id] = v.is_constant() ? const_cast<float*>(static_cast<const float*>(v.data))
                                             : plan->buffers[buffer_of[v.id]]->data;

  // Placement and preparation. Steps are sized first: nodes point into their own vectors.
  plan->steps.resize(g.nodes().size());
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    const Node& n = g.nodes()[i];
    Plan::Step& step = plan->steps[i];
    step.node = node_view(g, n, &plan->value_data, step.inputs, step.outputs);
    std::string reasons;
    for (Backend* b : backends_) {
      std::string why;
      if (b->supports(step.node, &why)) {
        step.backend = b;
        break;
      }
      reasons += " " + b->name() + ": " + why + ";";
    }
    if (!step.backend)
      throw Error("no backend accepts node '" + n.name + "' (" + op_name(n.op) + "):" + reasons);
    step.state = step.backend->prepare(step.node);
    // Backends that pack weights have their own copy now: let the file's pages go, so the
    // model is not resident twice (a reader that needs them faults them back in).
    model_.weights.drop_resident_pages();
  }
  plan->last_used = ++uses_;
  return *(plans_[batch] = std::move(plan));
}

void Executor::run(const float* pixels, int64_t n, float* logits) {
  Plan& plan = plan_for(n);
  const Graph& g = plan.graph;
  std::memcpy(plan.value_data[plan.input], pixels,
              sizeof(float) * static_cast<size_t>(element_count(g.value(plan.input).shape)));
  for (Plan::Step& step : plan.steps) step.backend->execute(step.state, step.node);
  std::memcpy(logits, plan.value_data[plan.output],
              sizeof(float) * static_cast<size_t>(element_count(g.value(plan.output).shape)));
}

std::string Executor::placement(int64_t batch) {
  Plan& plan = plan_for(batch);
  std::ostringstream os;
  const Graph& g = plan.graph;
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    const Node& n = g.nodes()[i];
    os << "  " << plan.steps[i].backend->name() << "  " << op_name(n.op) << "  " << n.name << "\n";
  }
  return os.str();
}

}  // namespace vitbatch
