// vit_graph.hpp: builds the IR of a ViT / DeiT for a fixed batch size, and lowers composite
// ops that no backend claims onto primitives.
#pragma once

#include "vitbatch/graph.hpp"
#include "vitbatch/model.hpp"

#include <functional>

namespace vitbatch {

// Input "pixels" [batch, C, H, W] (normalised), output "logits" [batch, classes]. Constants
// point into model.weights, which must outlive the graph.
Graph build_vit_graph(const Model& model, int64_t batch);

// A copy of `graph` in which every composite node for which `claimed(graph, node)` is false
// is replaced by its primitive expansion (see vit_ops.def).
Graph lower_composites(const Graph& graph, const std::function<bool(const Graph&, const Node&)>& claimed);

}  // namespace vitbatch
