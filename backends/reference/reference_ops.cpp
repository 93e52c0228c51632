#include "reference_ops.hpp"

#include "vit_plugin_helpers.hpp"

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xstrided_view.hpp>
#include <xtensor/xview.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

namespace reference {
namespace {

using vit_plugin::element_count;
using vit_plugin::shape_of;

auto view(const vit_tensor& t) {
  return xt::adapt(static_cast<float*>(t.data), static_cast<size_t>(element_count(t)),
                   xt::no_ownership(), shape_of(t));
}

// Splits [0, n) into `threads` contiguous chunks run in parallel; the kernels below give
// each output row to exactly one chunk, so results do not depend on the thread count.
template <class F>
void parallel_rows(int64_t n, int threads, F&& f) {
  int64_t workers = std::max<int64_t>(1, std::min<int64_t>(threads, n / 4));
  if (workers == 1) return f(int64_t{0}, n);
  std::vector<std::thread> pool;
  int64_t chunk = (n + workers - 1) / workers;
  for (int64_t begin = 0; begin < n; begin += chunk)
    pool.emplace_back(f, begin, std::min(n, begin + chunk));
  for (auto& t : pool) t.join();
}

void patchify(const vit_node& n) {
  const vit_tensor& x = n.inputs[0];
  size_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3], p = n.ints[0];
  auto grid = xt::reshape_view(view(x), std::vector<size_t>{N, C, H / p, p, W / p, p});
  auto out = xt::reshape_view(view(n.outputs[0]),
                              std::vector<size_t>{N, H / p, W / p, C, p, p});
  out = xt::transpose(grid, {0, 2, 4, 1, 3, 5});
}

void linear(const vit_node& n, int threads) {
  const vit_tensor& x = n.inputs[0];
  const vit_tensor& w = n.inputs[1];
  const float* bias = n.n_inputs > 2 ? static_cast<const float*>(n.inputs[2].data) : nullptr;
  int64_t K = w.shape[1], N = w.shape[0], M = element_count(x) / K;
  const float* xp = static_cast<const float*>(x.data);
  const float* wp = static_cast<const float*>(w.data);
  float* yp = static_cast<float*>(n.outputs[0].data);
  parallel_rows(M, threads, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      for (int64_t o = 0; o < N; ++o) {
        double acc = bias ? bias[o] : 0.0;
        for (int64_t k = 0; k < K; ++k) acc += double(xp[i * K + k]) * wp[o * K + k];
        yp[i * N + o] = static_cast<float>(acc);
      }
  });
}

void batch_matmul(const vit_node& n, int threads) {
  const vit_tensor& a = n.inputs[0];
  const vit_tensor& b = n.inputs[1];
  bool transpose_b = n.ints[0] != 0;
  int r = a.rank;
  int64_t M = a.shape[r - 2], K = a.shape[r - 1];
  int64_t N = transpose_b ? b.shape[r - 2] : b.shape[r - 1];
  // a's batch may be 1 for all of b's (see vit_ops.def): count batches from the output.
  int64_t batches = element_count(n.outputs[0]) / (M * N);
  int64_t a_batches = element_count(a) / (M * K);  // batches, or batches / b's first dim
  const float* ap = static_cast<const float*>(a.data);
  const float* bp = static_cast<const float*>(b.data);
  float* cp = static_cast<float*>(n.outputs[0].data);
  parallel_rows(batches * M, threads, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      int64_t bi = row / M;
      // With a shared, item i of b's batch reads a's matrices of item 0.
      const float* arow = ap + (row % (a_batches * M)) * K;
      const float* bmat = bp + bi * K * N;
      for (int64_t j = 0; j < N; ++j) {
        double acc = 0.0;
        for (int64_t k = 0; k < K; ++k)
          acc += double(arow[k]) * (transpose_b ? bmat[j * K + k] : bmat[k * N + j]);
        cp[row * N + j] = static_cast<float>(acc);
      }
    }
  });
}

void layer_norm(const vit_node& n) {
  const vit_tensor& x = n.inputs[0];
  int64_t D = x.shape[x.rank - 1], rows = element_count(x) / D;
  const float* xp = static_cast<const float*>(x.data);
  const float* g = static_cast<const float*>(n.inputs[1].data);
  const float* b = static_cast<const float*>(n.inputs[2].data);
  float* yp = static_cast<float*>(n.outputs[0].data);
  double eps = n.floats[0];
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = xp + r * D;
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < D; ++i) mean += row[i];
    mean /= D;
    for (int64_t i = 0; i < D; ++i) var += (row[i] - mean) * (row[i] - mean);
    var /= D;
    double inv = 1.0 / std::sqrt(var + eps);
    for (int64_t i = 0; i < D; ++i)
      yp[r * D + i] = static_cast<float>((row[i] - mean) * inv * g[i] + b[i]);
  }
}

void softmax(const vit_node& n) {
  const vit_tensor& x = n.inputs[0];
  int64_t D = x.shape[x.rank - 1], rows = element_count(x) / D;
  const float* xp = static_cast<const float*>(x.data);
  float* yp = static_cast<float*>(n.outputs[0].data);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = xp + r * D;
    double mx = *std::max_element(row, row + D), sum = 0.0;
    for (int64_t i = 0; i < D; ++i) sum += std::exp(double(row[i]) - mx);
    for (int64_t i = 0; i < D; ++i)
      yp[r * D + i] = static_cast<float>(std::exp(double(row[i]) - mx) / sum);
  }
}

// reduce_mean / reduce_max over one axis: [outer, len, inner] -> [outer, inner].
void reduce(const vit_node& n, bool mean) {
  const vit_tensor& x = n.inputs[0];
  int64_t axis = n.ints[0], outer = 1, inner = 1, len = x.shape[axis];
  for (int64_t d = 0; d < axis; ++d) outer *= x.shape[d];
  for (int64_t d = axis + 1; d < x.rank; ++d) inner *= x.shape[d];
  const float* xp = static_cast<const float*>(x.data);
  float* yp = static_cast<float*>(n.outputs[0].data);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      double acc = mean ? 0.0 : -INFINITY;
      for (int64_t l = 0; l < len; ++l) {
        double v = xp[(o * len + l) * inner + i];
        acc = mean ? acc + v : std::max(acc, v);
      }
      yp[o * inner + i] = static_cast<float>(mean ? acc / double(len) : acc);
    }
}

// b broadcast over a (vit_ops.def): b's index is a's modulo b's element count.
template <class F>
void elementwise(const vit_node& n, F&& f) {
  const float* a = static_cast<const float*>(n.inputs[0].data);
  const float* b = static_cast<const float*>(n.inputs[1].data);
  float* y = static_cast<float*>(n.outputs[0].data);
  int64_t count = element_count(n.inputs[0]), period = element_count(n.inputs[1]);
  for (int64_t i = 0; i < count; ++i) y[i] = f(a[i], b[i % period]);
}

template <class F>
void unary(const vit_node& n, F&& f) {
  const float* x = static_cast<const float*>(n.inputs[0].data);
  float* y = static_cast<float*>(n.outputs[0].data);
  int64_t count = element_count(n.inputs[0]);
  for (int64_t i = 0; i < count; ++i) y[i] = static_cast<float>(f(double(x[i])));
}

// x * cos + rotate(x) * sin per token past the first `skip` (vit_ops.def).
void rope(const vit_node& n) {
  const vit_tensor& x = n.inputs[0];
  const int64_t T = x.shape[x.rank - 2], E = x.shape[x.rank - 1], skip = n.ints[0], rows = element_count(x) / E;
  const bool half = n.ints[1] != 0;
  const float* xp = static_cast<const float*>(x.data);
  const float* sin = static_cast<const float*>(n.inputs[1].data);
  const float* cos = static_cast<const float*>(n.inputs[2].data);
  float* yp = static_cast<float*>(n.outputs[0].data);
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = xp + r * E;
    float* out = yp + r * E;
    int64_t t = r % T;
    if (t < skip) {
      std::copy(in, in + E, out);
      continue;
    }
    const float* s = sin + (t - skip) * E;
    const float* c = cos + (t - skip) * E;
    for (int64_t e = 0; e < E; ++e) {
      float rotated = half ? (e < E / 2 ? -in[e + E / 2] : in[e - E / 2]) : (e % 2 == 0 ? -in[e + 1] : in[e - 1]);
      out[e] = in[e] * c[e] + rotated * s[e];
    }
  }
}

void concat(const vit_node& n) {
  auto out = view(n.outputs[0]);
  size_t axis = n.ints[0], offset = 0;
  for (int32_t i = 0; i < n.n_inputs; ++i) {
    auto in = view(n.inputs[i]);
    size_t len = n.inputs[i].shape[axis];
    xt::xstrided_slice_vector dst(n.outputs[0].rank, xt::all());
    dst[axis] = xt::range(offset, offset + len);
    // A [1, ...] input is joined to every item of the batch (class token).
    auto target = xt::strided_view(out, dst);
    target = xt::broadcast(in, target.shape());
    offset += len;
  }
}

void slice(const vit_node& n) {
  xt::xstrided_slice_vector sv(n.inputs[0].rank, xt::all());
  sv[n.ints[0]] = xt::range(n.ints[1], n.ints[2]);
  view(n.outputs[0]) = xt::strided_view(view(n.inputs[0]), sv);
}

void permute(const vit_node& n) {
  std::vector<size_t> perm(n.ints + 1, n.ints + 1 + n.ints[0]);
  view(n.outputs[0]) = xt::transpose(view(n.inputs[0]), perm);
}

}  // namespace

void run_node(const vit_node& n, int threads) {
  switch (n.op) {
    case VIT_OP_PATCHIFY: return patchify(n);
    case VIT_OP_LINEAR: return linear(n, threads);
    case VIT_OP_BATCH_MATMUL: return batch_matmul(n, threads);
    case VIT_OP_ADD: return elementwise(n, [](float a, float b) { return a + b; });
    case VIT_OP_MUL: return elementwise(n, [](float a, float b) { return a * b; });
    case VIT_OP_REDUCE_MEAN: return reduce(n, true);
    case VIT_OP_ROPE: return rope(n);
    case VIT_OP_REDUCE_MAX: return reduce(n, false);
    case VIT_OP_GELU_TANH:
      return unary(n, [](double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); });
    case VIT_OP_QUICK_GELU: return unary(n, [](double x) { return x / (1.0 + std::exp(-1.702 * x)); });
    case VIT_OP_SILU: return unary(n, [](double x) { return x / (1.0 + std::exp(-x)); });
    case VIT_OP_LAYER_NORM: return layer_norm(n);
    case VIT_OP_GELU: {
      auto x = view(n.inputs[0]);
      view(n.outputs[0]) = 0.5f * x * (1.0f + xt::erf(x * float(M_SQRT1_2)));
      return;
    }
    case VIT_OP_SOFTMAX: return softmax(n);
    case VIT_OP_CONCAT: return concat(n);
    case VIT_OP_SLICE: return slice(n);
    case VIT_OP_RESHAPE:
      std::memcpy(n.outputs[0].data, n.inputs[0].data,
                  sizeof(float) * element_count(n.inputs[0]));
      return;
    case VIT_OP_PERMUTE: return permute(n);
    case VIT_OP_SCALE: view(n.outputs[0]) = view(n.inputs[0]) * n.floats[0]; return;
    default:
      throw std::runtime_error(std::string("reference: op ") + vit_plugin::op_name(n.op) +
                               " is not implemented");
  }
}

}  // namespace reference
