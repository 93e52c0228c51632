#include "vitbatch/system_memory.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

namespace vitbatch {
namespace {

uint64_t read_number(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return 0;
  try {
    return std::stoull(text);
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

uint64_t available_memory_bytes() {
  uint64_t available = 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemAvailable:") available = kib * 1024;
  uint64_t limit = read_number("/sys/fs/cgroup/memory.max"), used = read_number("/sys/fs/cgroup/memory.current");
  if (limit > 0) {
    uint64_t left = limit > used ? limit - used : 0;
    available = available ? std::min(available, left) : left;
  }
  return available;
}

}  // namespace vitbatch
