// vit_plugin_helpers.hpp: small C++ helpers for plugin authors. Header-only, depends on
// vit_plugin.h and the standard library alone, so a backend still needs nothing of core.
#pragma once

#include "vit_plugin.h"

#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace vit_plugin {

// Copies `text` into the host's message buffer, always NUL-terminated, truncated to fit.
inline void write_message(char* buffer, size_t size, const std::string& text) noexcept {
  if (buffer == nullptr || size == 0) return;
  size_t n = text.size() < size - 1 ? text.size() : size - 1;
  std::memcpy(buffer, text.data(), n);
  buffer[n] = '\0';
}

// Runs `body` (returning vit_status) and turns any exception into VIT_STATUS_ERROR with its
// message: the C++ trampoline every entry of a plugin goes through, since no exception may
// cross the C boundary.
template <class Body>
vit_status guard(char* message, size_t message_size, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    write_message(message, message_size, e.what());
  } catch (...) {
    write_message(message, message_size, "unknown exception in backend");
  }
  return VIT_STATUS_ERROR;
}

inline int64_t element_count(const vit_tensor& t) {
  int64_t n = 1;
  for (int32_t i = 0; i < t.rank; ++i) n *= t.shape[i];
  return n;
}

inline size_t dtype_size(int32_t dtype) {
  switch (dtype) {
    case VIT_DTYPE_F32: case VIT_DTYPE_I32: return 4;
    case VIT_DTYPE_F16: case VIT_DTYPE_BF16: return 2;
    default: return 1;
  }
}

inline bool is_contiguous(const vit_tensor& t) {
  int64_t expected = static_cast<int64_t>(dtype_size(t.dtype));
  for (int32_t i = t.rank - 1; i >= 0; --i) {
    if (t.shape[i] != 1 && t.strides[i] != expected) return false;
    expected *= t.shape[i];
  }
  return true;
}

// A descriptor of a dense row-major tensor (the layout the host always passes).
inline vit_tensor dense_tensor(const std::vector<int64_t>& shape, void* data, int32_t dtype = VIT_DTYPE_F32) {
  vit_tensor t{};
  t.dtype = dtype;
  t.rank = static_cast<int32_t>(shape.size());
  int64_t stride = static_cast<int64_t>(dtype_size(dtype));
  for (int32_t i = t.rank - 1; i >= 0; --i) {
    t.shape[i] = shape[i];
    t.strides[i] = stride;
    stride *= shape[i];
  }
  t.data = data;
  return t;
}

inline std::vector<size_t> shape_of(const vit_tensor& t) {
  return std::vector<size_t>(t.shape, t.shape + t.rank);
}

inline std::string shape_string(const vit_tensor& t) {
  std::string s = "[";
  for (int32_t i = 0; i < t.rank; ++i) s += (i ? "," : "") + std::to_string(t.shape[i]);
  return s + "]";
}

inline const char* op_name(int32_t op) {
  switch (op) {
#define VIT_OP(id, name) case VIT_OP_##id: return name;
#include "vit_ops.def"
#undef VIT_OP
    default: return "unknown";
  }
}

}  // namespace vit_plugin

namespace vit_plugin {

// A backend table with the header filled in (ABI, size, name, version, ops) and every entry
// empty: a plugin sets the entries it has. `ops` must have static storage.
template <size_t N>
vit_backend_api make_table(const char* name, const char* version, const int32_t (&ops)[N]) {
  vit_backend_api api{};
  api.abi_version = VIT_PLUGIN_ABI_VERSION;
  api.struct_size = sizeof(vit_backend_api);
  api.name = name;
  api.version = version;
  api.n_ops = static_cast<int32_t>(N);
  api.ops = ops;
  api.memory = VIT_MEMORY_HOST;
  return api;
}

// The host the plugin was loaded by (set by VIT_PLUGIN_EXPORT), for log().
inline const vit_host_api*& host() {
  static const vit_host_api* h = nullptr;
  return h;
}

// Whether the config carries key/value options (a host of ABI 2 or later).
inline bool has_options(const vit_backend_config& config) {
  return config.struct_size >= offsetof(vit_backend_config, options) + sizeof(config.options);
}

// The value of one option, or `fallback` when the config does not set it (or predates ABI 2).
inline std::string option(const vit_backend_config& config, const std::string& key, const std::string& fallback = "") {
  if (!has_options(config)) return fallback;
  for (int32_t i = 0; i < config.n_options; ++i)
    if (config.options[i].key && key == config.options[i].key) return config.options[i].value ? config.options[i].value : "";
  return fallback;
}

// Options the backend does not know, as "a, b" (empty when all are known): a typo in the
// YAML must not pass silently.
inline std::string unknown_options(const vit_backend_config& config, std::initializer_list<const char*> known) {
  std::string unknown;
  if (!has_options(config)) return unknown;
  for (int32_t i = 0; i < config.n_options; ++i) {
    bool found = false;
    for (const char* k : known) found = found || (config.options[i].key && std::strcmp(k, config.options[i].key) == 0);
    if (!found) unknown += (unknown.empty() ? "" : ", ") + std::string(config.options[i].key ? config.options[i].key : "");
  }
  return unknown;
}

// A node over tensors the caller keeps alive (tests, tools, a plugin's own sub-steps).
inline vit_node make_node(int32_t op, const std::vector<vit_tensor>& inputs, const std::vector<vit_tensor>& outputs,
                          std::initializer_list<int64_t> ints = {}, std::initializer_list<float> floats = {},
                          const char* name = "") {
  vit_node node{};
  node.struct_size = sizeof(vit_node);
  node.op = op;
  node.n_inputs = static_cast<int32_t>(inputs.size());
  node.inputs = inputs.data();
  node.n_outputs = static_cast<int32_t>(outputs.size());
  node.outputs = outputs.data();
  size_t i = 0;
  for (int64_t v : ints)
    if (i < VIT_MAX_INTS) node.ints[i++] = v;
  i = 0;
  for (float v : floats)
    if (i < VIT_MAX_FLOATS) node.floats[i++] = v;
  node.name = name;
  return node;
}

// The same, with inputs[i] marked constant (a weight) for each i in `constants`.
inline vit_node make_node(int32_t op, const std::vector<vit_tensor>& inputs, const std::vector<vit_tensor>& outputs,
                          std::initializer_list<int64_t> ints, std::initializer_list<float> floats, const char* name,
                          const std::vector<bool>& constants) {
  vit_node node = make_node(op, inputs, outputs, ints, floats, name);
  for (size_t i = 0; i < constants.size() && i < 64; ++i)
    if (constants[i]) node.constant_inputs |= uint64_t{1} << i;
  return node;
}

// ---- Claiming runs (vit_backend_api::claim) --------------------------------------------
// Whether every weight of n (inputs 1.., or an MLP's 1..4) is a constant.
inline bool weights_constant(const vit_node& n) {
  int last = n.op == VIT_OP_MLP ? 4 : n.n_inputs - 1;
  for (int i = 1; i <= last; ++i)
    if (!VIT_INPUT_IS_CONSTANT(&n, i)) return false;
  return true;
}

// An add of value `inner` and one same-shaped value from outside the run (a residual):
// which input is the residual, or -1 when `add` is not that (`other_inner`: another value of
// the run the residual may not be).
inline int residual_input(const vit_node& add, int32_t inner, int32_t other_inner = -1) {
  if (add.op != VIT_OP_ADD || add.n_inputs != 2) return -1;
  if (element_count(add.inputs[0]) != element_count(add.inputs[1])) return -1;
  for (int i = 0; i < 2; ++i)
    if (add.input_ids[1 - i] == inner && add.input_ids[i] != inner && add.input_ids[i] != other_inner &&
        !VIT_INPUT_IS_CONSTANT(&add, i))
      return i;
  return -1;
}

// Whether any of n[from..count) reads n[producer]'s output.
inline bool read_from(const vit_node* n, int32_t count, int producer, int from) {
  for (int32_t k = from; k < count; ++k)
    for (int32_t i = 0; i < n[k].n_inputs; ++i)
      if (n[k].input_ids[i] == n[producer].output_id) return true;
  return false;
}

}  // namespace vit_plugin

// Defines the plugin's entry point: TABLE is an expression giving its vit_backend_api
// (usually a function that starts from vit_plugin::make_table). Built once, never freed.
#define VIT_PLUGIN_EXPORT(TABLE)                                                                        \
  extern "C" __attribute__((visibility("default"))) const vit_backend_api* vit_plugin_init(               \
      const vit_host_api* vit_host, uint32_t) {                                                         \
    vit_plugin::host() = vit_host;                                                                      \
    static const vit_backend_api vit_table = (TABLE);                                                   \
    return &vit_table;                                                                                  \
  }
