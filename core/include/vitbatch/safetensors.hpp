// safetensors.hpp: a reader for the safetensors format (8-byte little-endian header length,
// a JSON header of {name: {dtype, shape, data_offsets}}, then the raw bytes). Files are
// mmapped; every offset and size is checked against the file before anything is read.
#pragma once

#include "vitbatch/ops.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace vitbatch {

struct TensorView {
  std::string name;
  std::string dtype;        // as written: "F32", "F16", "BF16", "I64", ...
  Shape shape;
  const uint8_t* data = nullptr;  // valid while the SafetensorsFile lives
  size_t nbytes = 0;
};

class SafetensorsFile {
 public:
  // Maps `path` read-only. Throws Error naming the file and the reason.
  static SafetensorsFile open(const std::string& path);
  // Parses bytes owned by `owner` (tests, in-memory files); `label` names it in errors.
  static SafetensorsFile parse(std::shared_ptr<const void> owner, const uint8_t* bytes,
                               size_t size, const std::string& label);

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& label() const { return label_; }
  // What keeps the bytes alive, and where they are (tensor data pointers point inside).
  const std::shared_ptr<const void>& owner() const { return owner_; }
  const void* mapping_base() const { return base_; }
  size_t mapping_bytes() const { return bytes_; }

 private:
  std::shared_ptr<const void> owner_;
  const void* base_ = nullptr;
  size_t bytes_ = 0;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
  std::string label_;
};

// Converts a F32, F16 or BF16 tensor to float32 into `out` (element_count(shape) floats).
// Throws Error naming the tensor for any other dtype.
void convert_to_f32(const TensorView& tensor, float* out);

}  // namespace vitbatch
