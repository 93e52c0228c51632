// reference_ops.hpp: the reference backend's op kernels. Plain and obviously right: xtensor
// expressions where they say it best, straight loops with double accumulation elsewhere.
#pragma once

#include "vit_plugin.h"

namespace reference {

// Runs one node. Throws std::runtime_error on a shape it cannot handle.
void run_node(const vit_node& node, int threads);

}  // namespace reference
