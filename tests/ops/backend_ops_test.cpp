// Every op of every backend found, on random shapes, against straightforward loops written
// here (the pattern of ggml's test-backend-ops). A backend that declines a node is reported
// as NOT SUPPORTED; the reference backend must accept every primitive op.
#include "vit_plugin_helpers.hpp"
#include "vitbatch/graph.hpp"
#include "vitbatch/plugin_host.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>
#include <memory>
#include <random>
#include <cstdlib>

#include "vitbatch/error.hpp"

using namespace vitbatch;

namespace {

using Tensor = std::vector<float>;

struct OpCase {
  std::string label;
  Op op;
  std::vector<Shape> inputs;
  std::vector<bool> constant;  // weights: offered to prepare() with data
  Params params;
  std::function<Tensor(const std::vector<Tensor>&)> loops;  // the expected output
  // Reshapes the N(0, 1) inputs where a case needs other values; may be empty.
  std::function<void(std::vector<Tensor>&)> adjust = {};
};

int64_t count(const Shape& s) { return element_count(s); }

Tensor random_tensor(const Shape& s, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  Tensor t(static_cast<size_t>(count(s)));
  for (float& v : t) v = d(rng);
  return t;
}

vit_tensor describe(const Shape& s, float* data) { return vit_plugin::dense_tensor(s, data); }

Params ints(std::initializer_list<int64_t> v) {
  Params p;
  std::copy(v.begin(), v.end(), p.ints.begin());
  return p;
}

// Row-major index helpers for the loop implementations.
std::vector<int64_t> unravel(int64_t i, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (int d = static_cast<int>(s.size()) - 1; d >= 0; --d) {
    idx[d] = i % s[d];
    i /= s[d];
  }
  return idx;
}
int64_t ravel(const std::vector<int64_t>& idx, const Shape& s) {
  int64_t i = 0;
  for (size_t d = 0; d < s.size(); ++d) i = i * s[d] + idx[d];
  return i;
}

std::vector<OpCase> make_cases(std::mt19937& rng) {
  auto dim = [&](int lo, int hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  std::vector<OpCase> cases;
  for (int round = 0; round < 3; ++round) {
    int64_t B = dim(1, 3), T = dim(1, 20), K = dim(1, 70), N = dim(1, 40), H = dim(1, 4), M = dim(1, 9);

    int64_t p = dim(1, 4), gh = dim(1, 3), gw = dim(1, 3), C = dim(1, 3);
    cases.push_back({"patchify", Op::PATCHIFY, {{B, C, gh * p, gw * p}}, {false}, ints({p}),
                     [=](const std::vector<Tensor>& in) {
                       Tensor out(static_cast<size_t>(B * gh * gw * C * p * p));
                       size_t o = 0;
                       for (int64_t n = 0; n < B; ++n)
                         for (int64_t y = 0; y < gh; ++y)
                           for (int64_t x = 0; x < gw; ++x)
                             for (int64_t c = 0; c < C; ++c)
                               for (int64_t ky = 0; ky < p; ++ky)
                                 for (int64_t kx = 0; kx < p; ++kx)
                                   out[o++] = in[0][((n * C + c) * gh * p + y * p + ky) * gw * p + x * p + kx];
                       return out;
                     }});

    for (bool bias : {true, false}) {
      std::vector<Shape> shapes = {{B, T, K}, {N, K}};
      if (bias) shapes.push_back({N});
      cases.push_back({bias ? "linear+bias" : "linear", Op::LINEAR, shapes, {false, true, true}, {},
                       [=](const std::vector<Tensor>& in) {
                         Tensor out(static_cast<size_t>(B * T * N));
                         for (int64_t r = 0; r < B * T; ++r)
                           for (int64_t o = 0; o < N; ++o) {
                             double acc = bias ? in[2][o] : 0.0;
                             for (int64_t k = 0; k < K; ++k) acc += double(in[0][r * K + k]) * in[1][o * K + k];
                             out[r * N + o] = float(acc);
                           }
                         return out;
                       }});
    }

    for (bool tb : {false, true}) {
      Shape b_shape = tb ? Shape{B, H, N, K} : Shape{B, H, K, N};
      cases.push_back({tb ? "batch_matmul a@bT" : "batch_matmul", Op::BATCH_MATMUL, {{B, H, M, K}, b_shape},
                       {false, false}, ints({tb ? 1 : 0}), [=](const std::vector<Tensor>& in) {
                         Tensor out(static_cast<size_t>(B * H * M * N));
                         for (int64_t b = 0; b < B * H; ++b)
                           for (int64_t i = 0; i < M; ++i)
                             for (int64_t j = 0; j < N; ++j) {
                               double acc = 0;
                               for (int64_t k = 0; k < K; ++k)
                                 acc += double(in[0][(b * M + i) * K + k]) *
                                        (tb ? in[1][(b * N + j) * K + k] : in[1][(b * K + k) * N + j]);
                               out[(b * M + i) * N + j] = float(acc);
                             }
                         return out;
                       }});
    }

    for (bool broadcast : {false, true}) {
      cases.push_back({broadcast ? "add (batch broadcast)" : "add", Op::ADD,
                       {{B, T, N}, {broadcast ? 1 : B, T, N}}, {false, broadcast}, {},
                       [=](const std::vector<Tensor>& in) {
                         Tensor out(in[0].size());
                         int64_t per_item = T * N;
                         for (size_t i = 0; i < out.size(); ++i)
                           out[i] = in[0][i] + in[1][broadcast ? i % per_item : i];
                         return out;
                       }});
    }

    Params eps;
    eps.floats[0] = 1e-6f;
    cases.push_back({"layer_norm", Op::LAYER_NORM, {{B, T, K}, {K}, {K}}, {false, true, true}, eps,
                     [=](const std::vector<Tensor>& in) {
                       Tensor out(in[0].size());
                       for (int64_t r = 0; r < B * T; ++r) {
                         double mean = 0, var = 0;
                         for (int64_t i = 0; i < K; ++i) mean += in[0][r * K + i] / double(K);
                         for (int64_t i = 0; i < K; ++i) var += std::pow(in[0][r * K + i] - mean, 2) / double(K);
                         for (int64_t i = 0; i < K; ++i)
                           out[r * K + i] = float((in[0][r * K + i] - mean) / std::sqrt(var + 1e-6) * in[1][i] + in[2][i]);
                       }
                       return out;
                     }});

    cases.push_back({"gelu", Op::GELU, {{B, T, N}}, {false}, {}, [](const std::vector<Tensor>& in) {
                       Tensor out(in[0].size());
                       for (size_t i = 0; i < out.size(); ++i)
                         out[i] = float(0.5 * in[0][i] * (1.0 + std::erf(in[0][i] / std::sqrt(2.0))));
                       return out;
                     }});

    cases.push_back({"softmax", Op::SOFTMAX, {{B, H, M, N}}, {false}, {}, [=](const std::vector<Tensor>& in) {
                       Tensor out(in[0].size());
                       for (int64_t r = 0; r < B * H * M; ++r) {
                         double z = 0;
                         for (int64_t i = 0; i < N; ++i) z += std::exp(double(in[0][r * N + i]));
                         for (int64_t i = 0; i < N; ++i) out[r * N + i] = float(std::exp(double(in[0][r * N + i])) / z);
                       }
                       return out;
                     }});

    int64_t T2 = dim(1, 5);
    cases.push_back({"concat (class token)", Op::CONCAT, {{1, 1, N}, {1, T2, N}, {B, T, N}}, {true, true, false},
                     ints({1}), [=](const std::vector<Tensor>& in) {
                       Tensor out;
                       for (int64_t b = 0; b < B; ++b) {
                         out.insert(out.end(), in[0].begin(), in[0].end());
                         out.insert(out.end(), in[1].begin(), in[1].end());
                         out.insert(out.end(), in[2].begin() + b * T * N, in[2].begin() + (b + 1) * T * N);
                       }
                       return out;
                     }});

    // Along the last axis, every input a whole batch (no broadcast), one of them a single column.
    int64_t N2 = dim(1, 6);
    cases.push_back({"concat (last axis)", Op::CONCAT, {{B, T, N}, {B, T, 1}, {B, T, N2}}, {false, false, false},
                     ints({2}), [=](const std::vector<Tensor>& in) {
                       Tensor out;
                       for (int64_t r = 0; r < B * T; ++r) {
                         out.insert(out.end(), in[0].begin() + r * N, in[0].begin() + (r + 1) * N);
                         out.push_back(in[1][r]);
                         out.insert(out.end(), in[2].begin() + r * N2, in[2].begin() + (r + 1) * N2);
                       }
                       return out;
                     }});

    int64_t start = dim(0, static_cast<int>(T - 1)), end = dim(static_cast<int>(start + 1), static_cast<int>(T));
    cases.push_back({"slice", Op::SLICE, {{B, T, N}}, {false}, ints({1, start, end}),
                     [=](const std::vector<Tensor>& in) {
                       Tensor out;
                       for (int64_t b = 0; b < B; ++b)
                         for (int64_t t = start; t < end; ++t)
                           out.insert(out.end(), in[0].begin() + (b * T + t) * N, in[0].begin() + (b * T + t + 1) * N);
                       return out;
                     }});

    cases.push_back({"reshape", Op::RESHAPE, {{B, T, N}}, {false}, dims_params({B * T, N}),
                     [](const std::vector<Tensor>& in) { return in[0]; }});

    Shape src = {B, T, 3, H, M};
    Shape perm = {2, 0, 3, 1, 4};
    cases.push_back({"permute", Op::PERMUTE, {src}, {false}, dims_params(perm), [=](const std::vector<Tensor>& in) {
                       Shape dst(perm.size());
                       for (size_t i = 0; i < perm.size(); ++i) dst[i] = src[perm[i]];
                       Tensor out(in[0].size());
                       for (int64_t i = 0; i < count(dst); ++i) {
                         auto o = unravel(i, dst);
                         std::vector<int64_t> s(src.size());
                         for (size_t d = 0; d < perm.size(); ++d) s[perm[d]] = o[d];
                         out[i] = in[0][ravel(s, src)];
                       }
                       return out;
                     }});

    // Composite ops: backends may claim them; reference leaves them to lowering. The last
    // round's attention has ViT's head size and a sequence that ends mid-tile (kernels that
    // specialise on head size 64 and tile the tokens are tested too).
    int64_t heads = dim(1, 3), hd = round == 2 ? 64 : dim(1, 8), D = heads * hd;
    if (round == 2) T = 130;
    Params attn;
    attn.ints[0] = heads;
    attn.floats[0] = 0.3f;
    // softmax(0.3 q.k + bias[h, i, j]) @ v per image and head, over Tn tokens; bias may be null.
    auto attention_loops_for = [=](int64_t n_heads, int64_t head_size) {
      return [=](const Tensor& x, const float* bias, int64_t Tn) {
        const int64_t width = n_heads * head_size;
        Tensor out(static_cast<size_t>(B * Tn * width));
        for (int64_t b = 0; b < B; ++b)
          for (int64_t h = 0; h < n_heads; ++h)
            for (int64_t i = 0; i < Tn; ++i) {
              std::vector<double> p(Tn);
              double mx = -1e300, z = 0;
              for (int64_t j = 0; j < Tn; ++j) {
                double acc = 0;
                for (int64_t k = 0; k < head_size; ++k)
                  acc += double(x[(b * Tn + i) * 3 * width + h * head_size + k]) *
                         x[(b * Tn + j) * 3 * width + width + h * head_size + k];
                p[j] = acc * 0.3 + (bias ? bias[(h * Tn + i) * Tn + j] : 0.0);
                mx = std::max(mx, p[j]);
              }
              for (double& v : p) z += (v = std::exp(v - mx));
              for (int64_t k = 0; k < head_size; ++k) {
                double acc = 0;
                for (int64_t j = 0; j < Tn; ++j)
                  acc += p[j] / z * x[(b * Tn + j) * 3 * width + 2 * width + h * head_size + k];
                out[(b * Tn + i) * width + h * head_size + k] = float(acc);
              }
            }
        return out;
      };
    };
    auto attention_loops = attention_loops_for(heads, hd);
    cases.push_back({"attention", Op::ATTENTION, {{B, T, 3 * D}}, {false}, attn,
                     [=](const std::vector<Tensor>& in) { return attention_loops(in[0], nullptr, T); }});
    // With a score bias (BEiT's relative position bias). One token more than above, so that
    // one of the two has an odd count (kernels that pair keys pad one).
    Params biased = attn;
    biased.ints[1] = 2;
    cases.push_back({"attention+score bias", Op::ATTENTION, {{B, T + 1, 3 * D}, {1, heads, T + 1, T + 1}}, {false, true},
                     biased, [=](const std::vector<Tensor>& in) { return attention_loops(in[0], in[1].data(), T + 1); }});
    if (round == 2) {
      // ViT's 197 tokens (13 vectors of 16 keys, the last with 5) and head size 80: 40 bf16
      // pairs of entries (two tiles of 16, then 8) and five vectors of 16 entries.
      Params wide = biased;
      wide.ints[0] = 2;
      auto wide_loops = attention_loops_for(2, 80);
      cases.push_back({"attention (197 tokens, head size 80)", Op::ATTENTION, {{B, 197, 480}, {1, 2, 197, 197}},
                       {false, true}, wide,
                       [=](const std::vector<Tensor>& in) { return wide_loops(in[0], in[1].data(), 197); }});
      // The bias 20 below 0 on every key: a kernel that left its padding keys (past 197) in the
      // softmax at a score of 0 would give them nearly all the weight.
      cases.back().adjust = [](std::vector<Tensor>& in) {
        for (float& v : in[1]) v -= 20.0f;
      };
    }
    auto mlp_loops = [=](int64_t hidden) {
      return [=](const std::vector<Tensor>& in) {
        Tensor out(static_cast<size_t>(B * T * K));
        std::vector<double> h(hidden);
        for (int64_t r = 0; r < B * T; ++r) {
          for (int64_t o = 0; o < hidden; ++o) {
            double acc = in[2][o];
            for (int64_t k = 0; k < K; ++k) acc += double(in[0][r * K + k]) * in[1][o * K + k];
            h[o] = 0.5 * acc * (1.0 + std::erf(acc / std::sqrt(2.0)));
          }
          for (int64_t o = 0; o < K; ++o) {
            double acc = in[4][o];
            for (int64_t j = 0; j < hidden; ++j) acc += h[j] * in[3][o * hidden + j];
            out[r * K + o] = float(acc);
          }
        }
        return out;
      };
    };
    int64_t hidden = dim(1, 50);
    cases.push_back({"mlp", Op::MLP, {{B, T, K}, {hidden, K}, {hidden}, {K, hidden}, {K}}, {false, true, true, true, true},
                     {}, mlp_loops(hidden)});
    {
      // Calibrated int8 ranges on the nodes (vitbatch calibrate): the inputs are N(0, 1), so
      // +-4.5 holds them; fc1's output grows with sqrt(K), and GELU's minimum is -0.17.
      params::Range x_range{-4.5f, 4.5f}, hidden_range{-0.17f, 5.0f * std::sqrt(float(K))};
      OpCase ranged = cases.back();
      ranged.label = "mlp+int8 ranges";
      ranged.params = params::mlp(&x_range, &hidden_range);
      cases.push_back(ranged);
      // fc1's outputs near -0.75, where GELU has its minimum (-0.17), and fc2's weights with
      // a mean: the hidden rows' floor then carries most of fc2's output, which int8 must
      // keep (a per-row scheme that dropped its lo[m] * sum(w) term would be far off).
      OpCase floor = cases[cases.size() - 2];
      floor.label = "mlp (GELU's floor)";
      floor.adjust = [](std::vector<Tensor>& in) {
        for (float& v : in[1]) v *= 0.02f;
        for (float& v : in[2]) v = -0.75f + 0.02f * v;
        for (float& v : in[3]) v += 0.5f;
      };
      cases.push_back(floor);
      floor.label = "mlp+int8 ranges (GELU's floor)";
      floor.params = ranged.params;
      cases.push_back(floor);
      if (round == 2) {
        // Wide enough (4096) that onednn's int8 MLP goes through in blocks of 32 rows, and
        // B x 130 rows: two or more blocks and a remainder.
        OpCase wide = ranged;
        wide.label = "mlp+int8 ranges (row blocks)";
        wide.inputs = {{B, T, K}, {4096, K}, {4096}, {K, 4096}, {K}};
        wide.loops = mlp_loops(4096);
        cases.push_back(wide);
      }
      hidden_range.keep_float = true;
      ranged.label = "mlp+ranges, fc2 float";
      ranged.params = params::mlp(&x_range, &hidden_range);
      cases.push_back(ranged);
      for (OpCase c : std::vector<OpCase>(cases.begin(), cases.end()))
        if (c.op == Op::LINEAR && c.label.rfind("linear", 0) == 0 && c.params.ints[0] == 0) {
          c.label += "+int8 range";
          c.params = params::linear(&x_range);
          cases.push_back(c);
        }
    }

    Params scale;
    scale.floats[0] = 0.125f;
    cases.push_back({"scale", Op::SCALE, {{B, H, M, N}}, {false}, scale, [](const std::vector<Tensor>& in) {
                       Tensor out(in[0]);
                       for (float& v : out) v *= 0.125f;
                       return out;
                     }});

    // mul with each broadcast of vit_ops.def: same shape, over the batch, a per-channel [N].
    const std::vector<std::pair<const char*, Shape>> mul_b = {{"mul", {B, T, N}}, {"mul (batch broadcast)", {1, T, N}},
                                                               {"mul (per channel)", {N}}};
    for (const auto& [label, b_shape] : mul_b) {
      int64_t period = count(b_shape);
      cases.push_back({label, Op::MUL, {{B, T, N}, b_shape}, {false, b_shape.size() == 1}, {},
                       [=](const std::vector<Tensor>& in) {
                         Tensor out(in[0].size());
                         for (size_t i = 0; i < out.size(); ++i) out[i] = in[0][i] * in[1][i % period];
                         return out;
                       }});
    }
    cases.push_back({"add (per channel)", Op::ADD, {{B, T, N}, {N}}, {false, true}, {}, [=](const std::vector<Tensor>& in) {
                       Tensor out(in[0].size());
                       for (size_t i = 0; i < out.size(); ++i) out[i] = in[0][i] + in[1][i % N];
                       return out;
                     }});

    for (bool mean : {true, false})
      for (int64_t axis : {int64_t{1}, int64_t{2}}) {
        Shape x{B, T, N};
        cases.push_back({std::string(mean ? "reduce_mean" : "reduce_max") + " axis " + std::to_string(axis),
                         mean ? Op::REDUCE_MEAN : Op::REDUCE_MAX, {x}, {false}, ints({axis}),
                         [=](const std::vector<Tensor>& in) {
                           int64_t len = x[axis], inner = axis == 1 ? N : 1, outer = axis == 1 ? B : B * T;
                           Tensor out(static_cast<size_t>(outer * inner));
                           for (int64_t o = 0; o < outer; ++o)
                             for (int64_t i = 0; i < inner; ++i) {
                               double acc = mean ? 0.0 : -1e300;
                               for (int64_t l = 0; l < len; ++l) {
                                 double v = in[0][(o * len + l) * inner + i];
                                 acc = mean ? acc + v / double(len) : std::max(acc, v);
                               }
                               out[o * inner + i] = float(acc);
                             }
                           return out;
                         }});
      }

    const std::vector<std::tuple<const char*, Op, double (*)(double)>> activations = {
        {"gelu_tanh", Op::GELU_TANH,
         [](double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }},
        {"quick_gelu", Op::QUICK_GELU, [](double x) { return x / (1.0 + std::exp(-1.702 * x)); }},
        {"silu", Op::SILU, [](double x) { return x / (1.0 + std::exp(-x)); }}};
    for (const auto& [label, op, f] : activations) {
      auto fn = f;
      cases.push_back({label, op, {{B, T, N}}, {false}, {}, [fn](const std::vector<Tensor>& in) {
                         Tensor out(in[0].size());
                         for (size_t i = 0; i < out.size(); ++i) out[i] = float(fn(in[0][i]));
                         return out;
                       }});
    }

    for (bool half : {false, true}) {
      int64_t E = 2 * dim(1, 8), skip = dim(0, 2), TT = skip + dim(1, 6);
      cases.push_back({half ? "rope (halves)" : "rope (pairs)", Op::ROPE, {{B, H, TT, E}, {TT - skip, E}, {TT - skip, E}},
                       {false, true, true}, ints({skip, half ? 1 : 0}), [=](const std::vector<Tensor>& in) {
                         Tensor out(in[0].size());
                         for (int64_t r = 0; r < B * H * TT; ++r)
                           for (int64_t e = 0; e < E; ++e) {
                             int64_t t = r % TT, i = r * E + e;
                             if (t < skip) {
                               out[i] = in[0][i];
                               continue;
                             }
                             int64_t partner = half ? (e < E / 2 ? e + E / 2 : e - E / 2) : (e % 2 ? e - 1 : e + 1);
                             float sign = half ? (e < E / 2 ? -1.0f : 1.0f) : (e % 2 ? 1.0f : -1.0f);
                             int64_t row = (t - skip) * E + e;
                             out[i] = in[0][i] * in[2][row] + sign * in[0][r * E + partner] * in[1][row];
                           }
                         return out;
                       }});
    }

    // Learned queries shared by a batch (attention pooling): a's first dim 1.
    cases.push_back({"batch_matmul (a shared)", Op::BATCH_MATMUL, {{1, H, M, K}, {B, H, N, K}}, {false, false}, ints({1}),
                     [=](const std::vector<Tensor>& in) {
                       Tensor out(static_cast<size_t>(B * H * M * N));
                       for (int64_t b = 0; b < B; ++b)
                         for (int64_t h = 0; h < H; ++h)
                           for (int64_t i = 0; i < M; ++i)
                             for (int64_t j = 0; j < N; ++j) {
                               double acc = 0;
                               for (int64_t k = 0; k < K; ++k)
                                 acc += double(in[0][(h * M + i) * K + k]) * in[1][((b * H + h) * N + j) * K + k];
                               out[((b * H + h) * M + i) * N + j] = float(acc);
                             }
                       return out;
                     }});
  }
  return cases;
}

// max |got - expected| / max(1, max |expected|): an error on the scale of the values.
double normalized_error(const Tensor& got, const Tensor& expected) {
  double err = 0, scale = 1;
  for (size_t i = 0; i < got.size(); ++i) {
    err = std::max(err, double(std::fabs(got[i] - expected[i])));
    scale = std::max(scale, double(std::fabs(expected[i])));
  }
  return err / scale;
}

}  // namespace

// The plugin directory, or $VITBATCH_TEST_BACKEND_DIR (scripts/gpu_check.sh runs these tests
// on a machine where the build tree lies elsewhere).
std::string backend_dir() {
  const char* env = std::getenv("VITBATCH_TEST_BACKEND_DIR");
  return env && *env ? env : VITBATCH_PLUGIN_DIR;
}

// Runs a prepared node, moving its activations through device memory when the backend has
// its own: inputs up, the output back, exactly as the executor does.
void run_node(Backend& backend, vit_node& node, std::vector<vit_tensor>& ins, vit_tensor& out, const std::vector<bool>& constant) {
  if (!backend.device_memory()) {
    void* state = backend.prepare(node);
    backend.execute(state, node);
    backend.release(state);
    return;
  }
  std::vector<void*> device;
  std::vector<vit_tensor> host_ins = ins;
  vit_tensor host_out = out;
  for (size_t i = 0; i < ins.size(); ++i) {
    if (i < constant.size() && constant[i]) continue;  // weights stay the host's
    size_t bytes = static_cast<size_t>(vit_plugin::element_count(ins[i])) * 4;
    device.push_back(backend.alloc(bytes, VIT_ALLOC_DEVICE));
    backend.copy(device.back(), host_ins[i].data, bytes, VIT_COPY_HOST_TO_DEVICE);
    ins[i].data = device.back();
  }
  size_t out_bytes = static_cast<size_t>(vit_plugin::element_count(out)) * 4;
  device.push_back(backend.alloc(out_bytes, VIT_ALLOC_DEVICE));
  out.data = device.back();
  void* state = backend.prepare(node);
  backend.execute(state, node);
  backend.copy(host_out.data, out.data, out_bytes, VIT_COPY_DEVICE_TO_HOST);
  backend.release(state);
  for (void* d : device) backend.free(d, VIT_ALLOC_DEVICE);
  ins = host_ins;
  out = host_out;
}

TEST_CASE("every op of every backend matches straightforward loops") {
  PluginHost host({backend_dir()});
  std::mt19937 rng(1234);
  std::vector<OpCase> cases = make_cases(rng);
  int backends = 0;
  // Reduced precisions change the matmuls only; their tolerance is on the scale of the output.
  // (onednn's int8 once more on oneDNN's own matmuls: its default is vitbatch's VNNI kernel
  // where the CPU has one; its bf16 on both matmuls, whichever is the CPU's default: where the
  // CPU lacks AVX512_BF16 the own one is refused and reported NOT SUPPORTED.)
  struct Run {
    std::string precision;
    double tolerance;
    std::vector<std::pair<std::string, std::string>> options;
  };
  const std::vector<Run> runs = {
      {"fp32", 1e-5, {}}, {"bf16", 2e-2, {}}, {"fp16", 2e-2, {}}, {"int8", 6e-2, {}}, {"int8", 6e-2, {{"int8_gemm", "onednn"}}},
      {"bf16", 2e-2, {{"bf16_gemm", "own"}}},     {"bf16", 2e-2, {{"bf16_gemm", "onednn"}}}};
  for (const PluginInfo& plugin : host.plugins()) {
    if (!plugin.rejected.empty()) continue;
    if (!plugin.unavailable.empty()) {  // e.g. cuda on a machine without a GPU
      std::printf("  %-10s SKIPPED (%s)\n", plugin.name.c_str(), plugin.unavailable.c_str());
      continue;
    }
    ++backends;
    for (const auto& [precision, tolerance, options] : runs) {
      if (!options.empty() && plugin.name != "onednn") continue;
      CAPTURE(options.size());
      std::unique_ptr<Backend> backend;
      try {
        backend = std::make_unique<Backend>(plugin, BackendOptions{2, precision, "{}", options});
      } catch (const Error& e) {
        CHECK(precision != "fp32");  // fp32 is every backend's
        std::printf("  %-10s %-6s NOT SUPPORTED (%s)\n", plugin.name.c_str(), precision.c_str(), e.what());
        continue;
      }
      for (OpCase& c : cases) {
        CAPTURE(plugin.name);
        CAPTURE(precision);
        CAPTURE(c.label);
        std::vector<Tensor> inputs;
        std::vector<vit_tensor> in_desc;
        for (const Shape& s : c.inputs) inputs.push_back(random_tensor(s, rng));
        if (c.adjust) c.adjust(inputs);
        for (size_t i = 0; i < inputs.size(); ++i) in_desc.push_back(describe(c.inputs[i], inputs[i].data()));
        Shape out_shape = infer_shape(c.op, c.inputs, c.params);
        Tensor out(static_cast<size_t>(count(out_shape)), std::nanf(""));
        vit_tensor out_desc = describe(out_shape, out.data());
        vit_node node{};
        node.struct_size = sizeof node;
        node.op = static_cast<int32_t>(c.op);
        node.n_inputs = static_cast<int32_t>(in_desc.size());
        node.inputs = in_desc.data();
        node.n_outputs = 1;
        node.outputs = &out_desc;
        std::copy(c.params.ints.begin(), c.params.ints.end(), node.ints);
        std::copy(c.params.floats.begin(), c.params.floats.end(), node.floats);
        node.name = c.label.c_str();
        for (size_t i = 0; i < c.constant.size() && i < 64; ++i)
          if (c.constant[i]) node.constant_inputs |= uint64_t{1} << i;
        std::string why;
        if (!backend->supports(node, &why)) {
          if (precision == "fp32") std::printf("  %-10s %-24s NOT SUPPORTED (%s)\n", plugin.name.c_str(), c.label.c_str(), why.c_str());
          CHECK((plugin.name != "reference" || is_composite(c.op)));  // the yardstick takes every primitive op
          continue;
        }
        run_node(*backend, node, in_desc, out_desc, c.constant);
        double err = normalized_error(out, c.loops(inputs));
        CHECK(err <= tolerance);
        if (!(err <= tolerance))
          std::printf("  %-10s %-6s %-24s error %.3g above %.3g\n", plugin.name.c_str(), precision.c_str(),
                      c.label.c_str(), err, tolerance);
      }
    }
  }
  CHECK(backends >= 1);
}

TEST_CASE("the reference backend leaves composite ops to lowering") {
  PluginHost host({VITBATCH_PLUGIN_DIR});
  Backend reference(host.find("reference"), BackendOptions{});
  vit_tensor qkv = describe({1, 4, 12}, nullptr), out = describe({1, 4, 4}, nullptr);
  vit_node node{};
  node.struct_size = sizeof node;
  node.op = VIT_OP_ATTENTION;
  node.n_inputs = 1;
  node.inputs = &qkv;
  node.n_outputs = 1;
  node.outputs = &out;
  node.ints[0] = 2;
  std::string why;
  CHECK_FALSE(reference.supports(node, &why));
  CHECK(why == "op not implemented");
}
