// The run record (OUTPUT.meta.json) that --resume reads back: a file a user may have edited.
#include "vitbatch/error.hpp"
#include "vitbatch/run_record.hpp"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

namespace {
std::string g_path;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  char pattern[] = "/tmp/vitbatch-fuzz-record.XXXXXX";
  g_path = std::string(mkdtemp(pattern)) + "/out.csv.meta.json";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::ofstream(g_path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  try {
    vitbatch::read_run_record(g_path);
  } catch (const vitbatch::Error&) {
  }
  return 0;
}
