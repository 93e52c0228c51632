#include "vitbatch/shard.hpp"

#include "vitbatch/error.hpp"

#include <algorithm>
#include <cctype>

namespace vitbatch {

uint64_t fnv1a64(const std::string& bytes) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

Shard Shard::parse(const std::string& text) {
  size_t slash = text.find('/');
  auto number = [&](const std::string& s) {
    if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); }))
      throw Error("--shard takes I/N with 0 <= I < N, got '" + text + "'");
    return std::stoull(s);
  };
  if (slash == std::string::npos) number("");
  Shard s{number(text.substr(0, slash)), number(text.substr(slash + 1))};
  if (s.count == 0 || s.index >= s.count) throw Error("--shard takes I/N with 0 <= I < N, got '" + text + "'");
  return s;
}

bool Shard::contains(const std::string& path) const { return count <= 1 || fnv1a64(path) % count == index; }

}  // namespace vitbatch
