// ops.hpp: the IR's op enum (generated from plugins/vit_ops.def), names and shape rules.
#pragma once

#include "vit_plugin.h"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace vitbatch {

enum class Op : int32_t {
#define VIT_OP(id, name) id = VIT_OP_##id,
#include "vit_ops.def"
#undef VIT_OP
};

// Ops are appended, never renumbered: a change here is a change of the plugin ABI.
static_assert(VIT_OP_COUNT == 21, "op list changed: append only, then update this count");

enum class DType : int32_t {
  F32 = VIT_DTYPE_F32,
  F16 = VIT_DTYPE_F16,
  BF16 = VIT_DTYPE_BF16,
  I8 = VIT_DTYPE_I8,
  U8 = VIT_DTYPE_U8,
  I32 = VIT_DTYPE_I32,
};

using Shape = std::vector<int64_t>;

// Op parameters, laid out as they cross the plugin ABI (see vit_ops.def for each op's).
struct Params {
  std::array<int64_t, VIT_MAX_INTS> ints{};
  std::array<float, VIT_MAX_FLOATS> floats{};
};

// Typed builders for each op's parameters (vit_ops.def says where each one travels), so a
// graph builder never writes positional ints.
namespace params {
Params patchify(int64_t patch_size);
Params batch_matmul(bool transpose_b);
Params layer_norm(double eps);
Params concat(int64_t axis);
Params slice(int64_t axis, int64_t start, int64_t end);
Params scale(double factor);
Params reduce(int64_t axis);
// qk_norm_eps > 0: the node carries q/k LayerNorm weights (inputs 1..4); rope: then sin and
// cos tables; score_bias: then a [1, heads, T, T] bias for the scores (vit_ops.def).
Params attention(int64_t heads, double scale, double qk_norm_eps = 0, bool score_bias = false, bool rope = false,
                 int64_t rope_skip = 0, bool rope_half = false);
Params rope(int64_t skip, bool half);
// A linear node's calibrated input range (int8), and an MLP node's two (fc1's, fc2's input).
struct Range {
  float lo = 0, hi = 0;
  bool keep_float = false;  // calibration keeps this matmul out of int8
};
Params linear(const Range* input);
Params mlp(const Range* fc1_input, const Range* fc2_input);
}  // namespace params

const char* op_name(Op op);
const char* dtype_name(DType dtype);
size_t dtype_size(DType dtype);
bool is_composite(Op op);
std::string shape_string(const Shape& shape);
int64_t element_count(const Shape& shape);

// The output shape of `op` on inputs of these shapes, or throws vitbatch::Error with the
// reason (the caller adds which node).
Shape infer_shape(Op op, const std::vector<Shape>& inputs, const Params& params);

// Multiply-accumulates of one node (0 for data movement), for `vitbatch info` and benches.
int64_t op_macs(Op op, const std::vector<Shape>& inputs, const Shape& output, const Params& params);

}  // namespace vitbatch
