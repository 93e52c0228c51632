// The YAML run config: syntax, keys, ranges, aliases, nesting.
#include "vitbatch/error.hpp"
#include "vitbatch/run_config.hpp"

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    vitbatch::parse_run_config(std::string(reinterpret_cast<const char*>(data), size), "fuzz.yaml", "/base");
  } catch (const vitbatch::Error&) {
  }
  return 0;
}
