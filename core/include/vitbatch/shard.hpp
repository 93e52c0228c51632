// shard.hpp: --shard I/N splits the inputs into N disjoint parts by a hash of each path
// (FNV-1a, 64-bit), so N tasks given the same inputs in any order cover each exactly once.
#pragma once

#include <cstdint>
#include <string>

namespace vitbatch {

struct Shard {
  uint64_t index = 0;  // 0 .. count-1
  uint64_t count = 1;
  // Parses "I/N" with 0 <= I < N; throws Error otherwise.
  static Shard parse(const std::string& text);
  bool contains(const std::string& path) const;
};

uint64_t fnv1a64(const std::string& bytes);

}  // namespace vitbatch
