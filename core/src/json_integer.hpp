// json_integer.hpp: whole numbers read from JSON files a user may have written or edited.
#pragma once

#include "vitbatch/error.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <string>

namespace vitbatch {

// nlohmann's get<int64_t>() casts a float to the integer: undefined behaviour past its range
// ("num_heads": 1e30, found by the config_json fuzzer) and a silent truncation inside it
// (3.7 heads would run as 3). A count from a file is an integer or an error naming it.
inline int64_t json_integer(const nlohmann::json& v, const std::string& what) {
  if (v.is_number_integer() &&
      (!v.is_number_unsigned() || v.get<uint64_t>() <= uint64_t(std::numeric_limits<int64_t>::max())))
    return v.get<int64_t>();
  std::string shown = v.dump();
  if (shown.size() > 40) shown = shown.substr(0, 37) + "...";
  throw Error(what + " must be an integer, got " + shown);
}

}  // namespace vitbatch
