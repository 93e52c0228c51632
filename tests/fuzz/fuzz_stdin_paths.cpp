// Paths on stdin, newline- and NUL-separated (CR LF, empty records, NUL bytes inside lines).
// Only "-" is given, so nothing touches the filesystem.
#include "vitbatch/input_paths.hpp"

#include <cstdint>
#include <sstream>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (bool nul : {false, true}) {
    std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
    vitbatch::InputPaths paths({"-"}, in, nul);
    size_t n = 0;
    while (auto item = paths.next()) {
      if (item->path.empty() && item->error.empty()) __builtin_trap();  // empty records are skipped
      if (++n > size + 1) __builtin_trap();                             // more records than bytes
    }
  }
  return 0;
}
