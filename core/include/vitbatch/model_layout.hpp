// model_layout.hpp: the one table of weights a model description needs, with their shapes,
// in timm's (canonical) names. The loader checks a checkpoint against it (missing, extra or
// mis-shaped tensors are errors naming the tensor), the graph builder reads the same names.
#pragma once

#include "vitbatch/model.hpp"

#include <string>
#include <vector>

namespace vitbatch {

struct ExpectedWeight {
  std::string name;
  Shape shape;
};

std::vector<ExpectedWeight> expected_weights(const ViTConfig& c);

}  // namespace vitbatch
