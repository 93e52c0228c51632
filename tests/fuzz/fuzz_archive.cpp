// Tar archives as classify reads them: the bytes are written to a .tar file and walked by
// InputPaths (libarchive's tar reader and every decompression filter, WebDataset sample
// grouping, damaged-archive rows), reading every member it hands out.
#include "vitbatch/input_paths.hpp"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/vitbatch_fuzz_archive_" + std::to_string(getpid()) + ".tar";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  std::istringstream none;
  vitbatch::InputPaths inputs({path}, none);
  vitbatch::InputItem item;
  size_t rows = 0;
  while (inputs.next(item) == vitbatch::InputStatus::Item) {
    if (item.path.rfind(path, 0) != 0) __builtin_trap();  // every row names the archive
    if (item.in_archive && inputs.read_member(item, 1 << 20) && !item.bytes) __builtin_trap();
    if (item.bytes && item.bytes->size() > (1 << 20)) __builtin_trap();  // the limit holds
    if (++rows > 2 * size + 2) __builtin_trap();  // a member needs a 512-byte header, at least
  }
  std::remove(path.c_str());
  return 0;
}
