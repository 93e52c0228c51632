// The --resume reader: an earlier output read back as CSV and as JSON Lines (quotes, torn
// records, \udcXX escapes, headers of another top-k).
#include "vitbatch/error.hpp"
#include "vitbatch/prediction_format.hpp"

#include <cstdint>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<std::string> labels = {"tench", "goldfish", "great white shark"};
  std::string text(reinterpret_cast<const char*>(data), size);
  for (const char* name : {"csv", "jsonl"}) {
    for (int k : {1, 2}) {
      auto format = vitbatch::PredictionFormat::make(name, k, labels);
      size_t complete = 0;
      try {
        auto rows = format->parse(text, &complete);
        if (complete > text.size()) __builtin_trap();
      } catch (const vitbatch::Error&) {
      }
    }
  }
  return 0;
}
