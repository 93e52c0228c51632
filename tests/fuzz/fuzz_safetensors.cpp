// The safetensors header and tensor table (offsets, shapes, dtypes, duplicates), then the
// conversion of every tensor it accepts.
#include "vitbatch/error.hpp"
#include "vitbatch/safetensors.hpp"

#include <cstdint>
#include <memory>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto owner = std::make_shared<std::vector<uint8_t>>(data, data + size);
  try {
    vitbatch::SafetensorsFile file = vitbatch::SafetensorsFile::parse(owner, owner->data(), owner->size(), "fuzz");
    for (const auto& [name, tensor] : file.tensors()) {
      std::vector<float> out(static_cast<size_t>(vitbatch::element_count(tensor.shape)) + 1);
      vitbatch::convert_to_f32(tensor, out.data());
    }
  } catch (const vitbatch::Error&) {
  }
  return 0;
}
