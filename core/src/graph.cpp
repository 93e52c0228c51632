#include "vitbatch/graph.hpp"

#include "vitbatch/error.hpp"

#include <algorithm>
#include <sstream>

namespace vitbatch {

int Graph::new_value(std::string name, Shape shape, DType dtype, int producer, const void* data) {
  Value v;
  v.id = static_cast<int>(values_.size());
  v.dtype = dtype;
  v.shape = std::move(shape);
  v.producer = producer;
  v.data = data;
  v.name = std::move(name);
  values_.push_back(std::move(v));
  return values_.back().id;
}

int Graph::add_input(std::string name, Shape shape, DType dtype) {
  int id = new_value(std::move(name), std::move(shape), dtype, -1, nullptr);
  inputs_.push_back(id);
  return id;
}

int Graph::add_constant(std::string name, Shape shape, const void* data, DType dtype) {
  if (data == nullptr) throw Error("constant '" + name + "' has no data");
  return new_value(std::move(name), std::move(shape), dtype, -1, data);
}

int Graph::add_node(Op op, std::vector<int> inputs, Params params, std::string name) {
  std::vector<Shape> shapes;
  for (int id : inputs) {
    if (id < 0 || id >= static_cast<int>(values_.size()))
      throw Error("node '" + name + "' (" + op_name(op) + "): input value %" + std::to_string(id) +
                  " does not exist");
    shapes.push_back(values_[id].shape);
  }
  Shape out;
  try {
    out = infer_shape(op, shapes, params);
  } catch (const Error& e) {
    throw Error("node '" + name + "' (" + op_name(op) + "): " + e.what());
  }
  Node node{op, std::move(inputs), -1, params, name};
  node.output = new_value(name, std::move(out), DType::F32, static_cast<int>(nodes_.size()), nullptr);
  nodes_.push_back(std::move(node));
  return nodes_.back().output;
}

void Graph::mark_output(int value) {
  if (value < 0 || value >= static_cast<int>(values_.size()))
    throw Error("graph output %" + std::to_string(value) + " does not exist");
  outputs_.push_back(value);
}

void Graph::verify() const {
  std::vector<bool> defined(values_.size(), false);
  for (int id : inputs_) defined.at(id) = true;
  for (const Value& v : values_) {
    if (v.is_constant()) defined[v.id] = true;
    if (v.producer == -1 && !v.is_constant() &&
        std::find(inputs_.begin(), inputs_.end(), v.id) == inputs_.end())
      throw Error("value %" + std::to_string(v.id) + " '" + v.name +
                  "' is neither an input, a constant nor a node's result");
  }
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    std::string where = "node #" + std::to_string(i) + " '" + n.name + "' (" + op_name(n.op) + ")";
    std::vector<Shape> shapes;
    for (int id : n.inputs) {
      if (id < 0 || id >= static_cast<int>(values_.size()))
        throw Error(where + ": input value %" + std::to_string(id) + " does not exist");
      const Value& v = values_[id];
      if (!defined[id])
        throw Error(where + ": input %" + std::to_string(id) + " '" + v.name +
                    "' is used before it is produced");
      if (v.dtype != DType::F32)
        throw Error(where + ": input %" + std::to_string(id) + " '" + v.name + "' has dtype " +
                    dtype_name(v.dtype) + ", expected f32");
      shapes.push_back(v.shape);
    }
    if (n.output < 0 || n.output >= static_cast<int>(values_.size()))
      throw Error(where + ": output value %" + std::to_string(n.output) + " does not exist");
    const Value& out = values_[n.output];
    if (out.producer != static_cast<int>(i) || defined[n.output])
      throw Error(where + ": output %" + std::to_string(n.output) + " '" + out.name +
                  "' is produced more than once or belongs to another node");
    Shape expected;
    try {
      expected = infer_shape(n.op, shapes, n.params);
    } catch (const Error& e) {
      throw Error(where + ": " + e.what());
    }
    if (expected != out.shape)
      throw Error(where + ": output %" + std::to_string(n.output) + " '" + out.name + "' has shape " +
                  shape_string(out.shape) + ", the op gives " + shape_string(expected));
    defined[n.output] = true;
  }
  if (outputs_.empty()) throw Error("graph has no outputs");
  for (int id : outputs_)
    if (id < 0 || id >= static_cast<int>(values_.size()) || !defined[id])
      throw Error("graph output %" + std::to_string(id) + " is never produced");
}

int64_t Graph::total_macs() const {
  int64_t macs = 0;
  for (const Node& n : nodes_) {
    std::vector<Shape> shapes;
    for (int id : n.inputs) shapes.push_back(values_[id].shape);
    macs += op_macs(n.op, shapes, values_[n.output].shape, n.params);
  }
  return macs;
}

std::string Graph::to_string() const {
  std::ostringstream os;
  auto ref = [&](int id) { return "%" + std::to_string(id); };
  for (int id : inputs_)
    os << "input " << ref(id) << " " << values_[id].name << " : " << dtype_name(values_[id].dtype)
       << shape_string(values_[id].shape) << "\n";
  size_t constants = 0;
  for (const Value& v : values_) constants += v.is_constant();
  os << "constants: " << constants << " tensors\n";
  for (const Node& n : nodes_) {
    os << ref(n.output) << " = " << op_name(n.op) << "(";
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const Value& v = values_[n.inputs[i]];
      os << (i ? ", " : "") << (v.is_constant() ? v.name : ref(v.id));
    }
    os << ") : " << shape_string(values_[n.output].shape) << "  # " << n.name << "\n";
  }
  os << "outputs:";
  for (int id : outputs_) os << " " << ref(id);
  os << "\n";
  return os.str();
}

Params dims_params(const Shape& dims) {
  Params p;
  if (dims.size() + 1 > p.ints.size()) throw Error("too many dims: " + shape_string(dims));
  p.ints[0] = static_cast<int64_t>(dims.size());
  std::copy(dims.begin(), dims.end(), p.ints.begin() + 1);
  return p;
}

}  // namespace vitbatch
