// vit_plugin_helpers.hpp: small C++ helpers for plugin authors. Header-only, depends on
// vit_plugin.h and the standard library alone, so a backend still needs nothing of core.
#pragma once

#include "vit_plugin.h"

#include <cstring>
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
