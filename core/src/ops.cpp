#include "vitbatch/ops.hpp"

#include "vitbatch/error.hpp"

#include <algorithm>
#include <numeric>

namespace vitbatch {
namespace {

[[noreturn]] void fail(const std::string& why) { throw Error(why); }

void expect_inputs(const std::vector<Shape>& in, size_t lo, size_t hi) {
  if (in.size() < lo || in.size() > hi)
    fail("takes " + (lo == hi ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(hi)) +
         " inputs, got " + std::to_string(in.size()));
}

void expect_rank(const Shape& s, size_t lo, const char* what) {
  if (s.size() < lo) fail(std::string(what) + " needs rank >= " + std::to_string(lo) + ", got " + shape_string(s));
}

Shape patchify(const std::vector<Shape>& in, const Params& p) {
  expect_inputs(in, 1, 1);
  const Shape& x = in[0];
  int64_t ps = p.ints[0];
  if (x.size() != 4) fail("input must be [N,C,H,W], got " + shape_string(x));
  if (ps <= 0 || x[2] % ps || x[3] % ps)
    fail("patch size " + std::to_string(ps) + " does not divide " + shape_string(x));
  return {x[0], (x[2] / ps) * (x[3] / ps), x[1] * ps * ps};
}

Shape linear(const std::vector<Shape>& in) {
  expect_inputs(in, 2, 3);
  const Shape &x = in[0], &w = in[1];
  expect_rank(x, 1, "x");
  if (w.size() != 2) fail("weight must be [N,K], got " + shape_string(w));
  if (x.back() != w[1]) fail("x " + shape_string(x) + " and weight " + shape_string(w) + " disagree on K");
  if (in.size() == 3 && in[2] != Shape{w[0]})
    fail("bias " + shape_string(in[2]) + " must be [" + std::to_string(w[0]) + "]");
  Shape out = x;
  out.back() = w[0];
  return out;
}

Shape batch_matmul(const std::vector<Shape>& in, const Params& p) {
  expect_inputs(in, 2, 2);
  const Shape &a = in[0], &b = in[1];
  expect_rank(a, 2, "a");
  if (a.size() != b.size()) fail("a " + shape_string(a) + " and b " + shape_string(b) + " differ in rank");
  size_t r = a.size();
  bool a_broadcast = r > 2 && a[0] == 1 && std::equal(a.begin() + 1, a.end() - 2, b.begin() + 1);
  if (!std::equal(a.begin(), a.end() - 2, b.begin()) && !a_broadcast)
    fail("leading dims of " + shape_string(a) + " and " + shape_string(b) + " differ");
  bool tb = p.ints[0] != 0;
  int64_t kb = tb ? b[r - 1] : b[r - 2], n = tb ? b[r - 2] : b[r - 1];
  if (a[r - 1] != kb) fail("a " + shape_string(a) + " and b " + shape_string(b) + " disagree on K");
  Shape out = a;
  out[0] = r > 2 ? b[0] : a[0];
  out[r - 1] = n;
  return out;
}

// add and mul: b broadcast over a's batch, or b being a's last dims (see vit_ops.def).
Shape elementwise(const std::vector<Shape>& in, const char* verb) {
  expect_inputs(in, 2, 2);
  const Shape &a = in[0], &b = in[1];
  bool batch_broadcast = a.size() == b.size() && !a.empty() && b[0] == 1 &&
                         std::equal(a.begin() + 1, a.end(), b.begin() + 1);
  bool suffix = !b.empty() && b.size() < a.size() && std::equal(b.begin(), b.end(), a.end() - b.size());
  if (a != b && !batch_broadcast && !suffix)
    fail(std::string("cannot ") + verb + " " + shape_string(a) + " and " + shape_string(b));
  return a;
}

Shape reduce(const std::vector<Shape>& in, const Params& p) {
  expect_inputs(in, 1, 1);
  const Shape& x = in[0];
  int64_t axis = p.ints[0];
  if (x.size() < 2) fail("input must have rank >= 2, got " + shape_string(x));
  if (axis < 0 || axis >= static_cast<int64_t>(x.size()))
    fail("axis " + std::to_string(axis) + " out of range for " + shape_string(x));
  Shape out = x;
  out.erase(out.begin() + axis);
  return out;
}

Shape layer_norm(const std::vector<Shape>& in, const Params& p) {
  expect_inputs(in, 3, 3);
  expect_rank(in[0], 1, "x");
  Shape d{in[0].back()};
  if (in[1] != d || in[2] != d)
    fail("gamma " + shape_string(in[1]) + " and beta " + shape_string(in[2]) + " must be " + shape_string(d));
  if (!(p.floats[0] > 0)) fail("eps must be > 0");
  return in[0];
}

Shape concat(const std::vector<Shape>& in, const Params& p) {
  if (in.empty()) fail("takes at least 1 input");
  size_t axis = static_cast<size_t>(p.ints[0]);
  int64_t batch = 1;
  for (const Shape& s : in) batch = std::max(batch, s.empty() ? 1 : s[0]);
  Shape out = in[0];
  if (axis < 1 || axis >= out.size()) fail("axis " + std::to_string(axis) + " out of range for " + shape_string(out));
  out[0] = batch;
  out[axis] = 0;
  for (const Shape& s : in) {
    if (s.size() != out.size()) fail("inputs differ in rank: " + shape_string(s));
    for (size_t i = 0; i < s.size(); ++i) {
      if (i == axis) continue;
      if (i == 0 ? (s[0] != batch && s[0] != 1) : s[i] != out[i])
        fail("input " + shape_string(s) + " does not fit " + shape_string(in[0]) + " off axis " + std::to_string(axis));
    }
    out[axis] += s[axis];
  }
  return out;
}

Shape slice(const std::vector<Shape>& in, const Params& p) {
  expect_inputs(in, 1, 1);
  Shape out = in[0];
  int64_t axis = p.ints[0], start = p.ints[1], end = p.ints[2];
  if (axis < 0 || axis >= static_cast<int64_t>(out.size()))
    fail("axis " + std::to_string(axis) + " out of range for " + shape_string(out));
  if (start < 0 || end > out[axis] || start >= end)
    fail("range [" + std::to_string(start) + "," + std::to_string(end) + ") out of bounds for " + shape_string(out));
  out[axis] = end - start;
  return out;
}

Shape dims_param(const Params& p) {
  int64_t rank = p.ints[0];
  if (rank < 1 || rank > VIT_MAX_INTS - 1 || rank > VIT_MAX_RANK) fail("rank " + std::to_string(rank) + " out of range");
  return Shape(p.ints.begin() + 1, p.ints.begin() + 1 + rank);
}

Shape reshape(const std::vector<Shape>& in, const Params& p) {
  expect_inputs(in, 1, 1);
  Shape out = dims_param(p);
  if (element_count(out) != element_count(in[0]) || std::any_of(out.begin(), out.end(), [](int64_t d) { return d <= 0; }))
    fail("cannot reshape " + shape_string(in[0]) + " to " + shape_string(out));
  return out;
}

Shape permute(const std::vector<Shape>& in, const Params& p) {
  expect_inputs(in, 1, 1);
  Shape perm = dims_param(p);
  if (perm.size() != in[0].size()) fail("permutation rank differs from " + shape_string(in[0]));
  Shape sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i)
    if (sorted[i] != static_cast<int64_t>(i)) fail("not a permutation: " + shape_string(perm));
  Shape out(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) out[i] = in[0][perm[i]];
  return out;
}

Shape attention(const std::vector<Shape>& in, const Params& p) {
  const bool qk_norm = p.ints[1] & 1, bias = p.ints[1] & 2, rotary = p.ints[1] & 4;
  size_t expected = 1 + (qk_norm ? 4 : 0) + (rotary ? 2 : 0) + (bias ? 1 : 0);
  if (in.size() != expected)
    fail("takes " + std::to_string(expected) + " inputs (qkv" + (qk_norm ? ", the q/k norms" : "") +
         (rotary ? ", rope's sin and cos" : "") + (bias ? ", the score bias" : "") + "), got " + std::to_string(in.size()));
  const Shape& qkv = in[0];
  int64_t heads = p.ints[0];
  if (qkv.size() != 3 || qkv[2] % 3) fail("qkv must be [B,T,3*D], got " + shape_string(qkv));
  if (heads <= 0 || (qkv[2] / 3) % heads) fail("heads " + std::to_string(heads) + " does not divide D=" + std::to_string(qkv[2] / 3));
  Shape head{qkv[2] / 3 / heads};
  if (qk_norm) {
    for (size_t i = 1; i < 5; ++i)
      if (in[i] != head) fail("q/k norm parameter " + shape_string(in[i]) + " must be " + shape_string(head));
    if (!(p.floats[1] > 0)) fail("q/k norm eps must be > 0");
  }
  if (rotary) {
    size_t at = qk_norm ? 5 : 1;
    Shape table{qkv[1] - p.ints[2], head[0]};
    if (p.ints[2] < 0 || p.ints[2] >= qkv[1] || in[at] != table || in[at + 1] != table)
      fail("rope tables " + shape_string(in[at]) + ", " + shape_string(in[at + 1]) + " must be " + shape_string(table));
  }
  if (bias && in.back() != Shape{1, heads, qkv[1], qkv[1]})
    fail("score bias " + shape_string(in.back()) + " must be " + shape_string({1, heads, qkv[1], qkv[1]}));
  return {qkv[0], qkv[1], qkv[2] / 3};
}

Shape rope(const std::vector<Shape>& in, const Params& p) {
  expect_inputs(in, 3, 3);
  const Shape& x = in[0];
  expect_rank(x, 2, "x");
  int64_t T = x[x.size() - 2], E = x.back(), skip = p.ints[0];
  if (E % 2) fail("the last axis must be even, got " + shape_string(x));
  if (skip < 0 || skip >= T) fail("skip " + std::to_string(skip) + " out of range for " + shape_string(x));
  Shape table{T - skip, E};
  if (in[1] != table || in[2] != table)
    fail("sin " + shape_string(in[1]) + " and cos " + shape_string(in[2]) + " must be " + shape_string(table));
  return x;
}

Shape mlp(const std::vector<Shape>& in) {
  expect_inputs(in, 5, 5);
  Shape hidden = linear({in[0], in[1], in[2]});
  return linear({hidden, in[3], in[4]});
}

Shape unary(const std::vector<Shape>& in) {
  expect_inputs(in, 1, 1);
  return in[0];
}

Params with_ints(std::initializer_list<int64_t> ints) {
  Params p;
  std::copy(ints.begin(), ints.end(), p.ints.begin());
  return p;
}

}  // namespace

namespace params {
Params patchify(int64_t patch_size) { return with_ints({patch_size}); }
Params batch_matmul(bool transpose_b) { return with_ints({transpose_b ? 1 : 0}); }
Params concat(int64_t axis) { return with_ints({axis}); }
Params slice(int64_t axis, int64_t start, int64_t end) { return with_ints({axis, start, end}); }
Params reduce(int64_t axis) { return with_ints({axis}); }
Params layer_norm(double eps) {
  Params p;
  p.floats[0] = static_cast<float>(eps);
  return p;
}
Params scale(double factor) {
  Params p;
  p.floats[0] = static_cast<float>(factor);
  return p;
}
Params rope(int64_t skip, bool half) { return with_ints({skip, half ? 1 : 0}); }
Params linear(const Range* input) {
  Params p;
  if (input) p.ints[0] = 1, p.ints[1] = input->keep_float ? 1 : 0, p.floats[0] = input->lo, p.floats[1] = input->hi;
  return p;
}
Params mlp(const Range* fc1_input, const Range* fc2_input) {
  Params p;
  if (fc1_input && fc2_input) {
    p.ints[0] = 1;
    p.ints[1] = (fc1_input->keep_float ? 1 : 0) | (fc2_input->keep_float ? 2 : 0);
    p.floats[0] = fc1_input->lo, p.floats[1] = fc1_input->hi;
    p.floats[2] = fc2_input->lo, p.floats[3] = fc2_input->hi;
  }
  return p;
}
Params attention(int64_t heads, double scale, double qk_norm_eps, bool score_bias, bool rope, int64_t rope_skip,
                 bool rope_half) {
  Params p;
  p.ints[0] = heads;
  p.ints[1] = (qk_norm_eps > 0 ? 1 : 0) | (score_bias ? 2 : 0) | (rope ? 4 : 0);
  p.ints[2] = rope_skip;
  p.ints[3] = rope_half ? 1 : 0;
  p.floats[0] = static_cast<float>(scale);
  p.floats[1] = static_cast<float>(qk_norm_eps);
  return p;
}
}  // namespace params

const char* op_name(Op op) {
  switch (op) {
#define VIT_OP(id, name) case Op::id: return name;
#include "vit_ops.def"
#undef VIT_OP
  }
  return "unknown";
}

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::I8: return "i8";
    case DType::U8: return "u8";
    case DType::I32: return "i32";
  }
  return "?";
}

size_t dtype_size(DType d) {
  switch (d) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    default: return 1;
  }
}

bool is_composite(Op op) {
  switch (op) {
#define VIT_OP(id, name)
#define VIT_COMPOSITE(id, name) case Op::id: return true;
#include "vit_ops.def"
#undef VIT_COMPOSITE
#undef VIT_OP
    default: return false;
  }
}

std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t element_count(const Shape& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

Shape infer_shape(Op op, const std::vector<Shape>& in, const Params& p) {
  switch (op) {
    case Op::PATCHIFY: return patchify(in, p);
    case Op::LINEAR: return linear(in);
    case Op::BATCH_MATMUL: return batch_matmul(in, p);
    case Op::ADD: return elementwise(in, "add");
    case Op::MUL: return elementwise(in, "multiply");
    case Op::REDUCE_MEAN: case Op::REDUCE_MAX: return reduce(in, p);
    case Op::ROPE: return rope(in, p);
    case Op::LAYER_NORM: return layer_norm(in, p);
    case Op::GELU: case Op::SOFTMAX: case Op::SCALE: case Op::GELU_TANH: case Op::QUICK_GELU: case Op::SILU:
      return unary(in);
    case Op::CONCAT: return concat(in, p);
    case Op::SLICE: return slice(in, p);
    case Op::RESHAPE: return reshape(in, p);
    case Op::PERMUTE: return permute(in, p);
    case Op::ATTENTION: return attention(in, p);
    case Op::MLP: return mlp(in);
  }
  fail("unknown op " + std::to_string(static_cast<int>(op)));
}

int64_t op_macs(Op op, const std::vector<Shape>& in, const Shape& out, const Params&) {
  switch (op) {
    case Op::LINEAR: return element_count(out) * in[1][1];
    case Op::BATCH_MATMUL: {
      size_t r = in[0].size();
      return element_count(out) * in[0][r - 1];
    }
    case Op::ATTENTION: {
      int64_t b = in[0][0], t = in[0][1], d = in[0][2] / 3;
      return 2 * b * t * t * d;  // q @ k^T and attn @ v, whatever the number of heads
    }
    case Op::MLP: return element_count(in[0]) / in[0].back() * 2 * in[1][0] * in[1][1];
    default: return 0;
  }
}

}  // namespace vitbatch
