// model_layout.hpp: the one table of weights a model description needs, with their shapes,
// in timm's (canonical) names. The loader checks a checkpoint against it (missing, extra or
// mis-shaped tensors are errors naming the tensor), the graph builder reads the same names.
#pragma once

#include "vitbatch/model.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace vitbatch {

struct ExpectedWeight {
  std::string name;
  Shape shape;
};

std::vector<ExpectedWeight> expected_weights(const ViTConfig& c);

// BEiT's relative positions on a grid x grid window plus a class token: the table has
// (2 grid - 1)^2 + 3 rows; the index maps each (query, key) token pair to its row, as timm's
// gen_relative_position_index ([tokens x tokens], tokens = grid^2 + 1).
int64_t relative_distances(int64_t grid);
std::vector<int32_t> relative_position_index(int64_t grid);

}  // namespace vitbatch
