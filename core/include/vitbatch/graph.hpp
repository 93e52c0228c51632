// graph.hpp: the IR. A Graph holds values (inputs, constants, node results) and nodes in
// topological order; the builder API only accepts values that already exist, so a graph
// built through it is ordered by construction. verify() re-checks everything (graphs can
// also be edited, e.g. by lowering) and names the node and value at fault.
#pragma once

#include "vitbatch/ops.hpp"

#include <string>
#include <vector>

namespace vitbatch {

struct Value {
  int id = -1;
  DType dtype = DType::F32;
  Shape shape;
  int producer = -1;            // node index, -1 for graph inputs and constants
  const void* data = nullptr;   // constants only; owned by the weight store, not the graph
  std::string name;
  bool is_constant() const { return data != nullptr; }
};

struct Node {
  Op op = Op::ADD;
  std::vector<int> inputs;  // value ids
  int output = -1;          // value id
  Params params;
  std::string name;
};

class Graph {
 public:
  int add_input(std::string name, Shape shape, DType dtype = DType::F32);
  int add_constant(std::string name, Shape shape, const void* data, DType dtype = DType::F32);
  // Appends a node; its output's shape comes from the op's shape rule. Throws Error naming
  // the node when an input does not exist yet or the shapes do not fit.
  int add_node(Op op, std::vector<int> inputs, Params params, std::string name);
  void mark_output(int value);

  // Throws Error naming the node and value on the first problem found.
  void verify() const;
  std::string to_string() const;
  int64_t total_macs() const;

  const std::vector<Value>& values() const { return values_; }
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<int>& inputs() const { return inputs_; }
  const std::vector<int>& outputs() const { return outputs_; }
  const Value& value(int id) const { return values_.at(static_cast<size_t>(id)); }

  // Raw access for passes and for tests that build broken graphs on purpose.
  std::vector<Value>& mutable_values() { return values_; }
  std::vector<Node>& mutable_nodes() { return nodes_; }

 private:
  int new_value(std::string name, Shape shape, DType dtype, int producer, const void* data);
  std::vector<Value> values_;
  std::vector<Node> nodes_;
  std::vector<int> inputs_;
  std::vector<int> outputs_;
};

// Params helpers for the builder and lowering: pack dims or a permutation into ints[].
Params dims_params(const Shape& dims);

}  // namespace vitbatch
