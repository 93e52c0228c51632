#include "onednn_kernels.hpp"

#include "fused_attention.hpp"
#include "simd_gelu.hpp"
#include "weight_quantize.hpp"

#include "vit_plugin_helpers.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <unordered_map>

namespace onednn_backend {

using dnnl::memory;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::F32;
  if (name == "bf16") return Precision::BF16;
  if (name == "int8") return Precision::INT8;
  throw std::runtime_error("onednn: unknown precision '" + name + "' (fp32, bf16, int8)");
}

// Never destroyed: contexts and kernels may outlive static destruction at exit.
PackCache& pack_cache() {
  static auto* cache = new PackCache;
  return *cache;
}

const dnnl::engine& cpu_engine() {
  static const auto* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

const char* precision_name(Precision p) {
  return p == Precision::F32 ? "fp32" : p == Precision::BF16 ? "bf16" : "int8";
}

namespace {

int64_t rows_of(const vit_tensor& t) { return vit_plugin::element_count(t) / t.shape[t.rank - 1]; }

memory::dims dims_of(const vit_tensor& t) { return memory::dims(t.shape, t.shape + t.rank); }

memory::dims plain_strides(const memory::dims& dims) {
  memory::dims strides(dims.size(), 1);
  for (int i = static_cast<int>(dims.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * dims[i + 1];
  return strides;
}

memory::desc plain(const memory::dims& dims, dt type) { return memory::desc(dims, type, plain_strides(dims)); }

// The precision a matmul runs in: the context's, or at int8 for one calibration keeps out of
// int8, the float fallback.
Precision matmul_precision(const Context& ctx, bool keep_float) {
  return keep_float && ctx.precision == Precision::INT8 ? ctx.float_fallback : ctx.precision;
}

// This OpenMP thread's contiguous share of [0, n).
std::pair<int64_t, int64_t> share(int64_t n) {
  int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
  int64_t chunk = (n + threads - 1) / threads;
  return {std::min(n, id * chunk), std::min(n, (id + 1) * chunk)};
}

// The quantisation passes, cloned for AVX-512 and AVX2 (the build targets plain x86-64),
// on 16-lane GCC vector types: one zmm, two ymm or four xmm per clone.
typedef int32_t i32x16 __attribute__((vector_size(64)));
typedef uint8_t u8x16 __attribute__((vector_size(16)));

__attribute__((target_clones("avx512f", "avx2", "default")))
void span_min_max(const float* x, int64_t n, float* lo, float* hi) {
  // In vectors: written as one chain of scalars GCC keeps the float reduction in order, at
  // an element a cycle, which made it the per-row int8 fc2's main cost.
  f32x16 l = {}, h = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    f32x16 v;
    std::memcpy(&v, x + i, sizeof v);
    l = v < l ? v : l;
    h = v > h ? v : h;
  }
  float lo_ = 0.0f, hi_ = 0.0f;
  for (int j = 0; j < 16; ++j) {
    lo_ = l[j] < lo_ ? l[j] : lo_;
    hi_ = h[j] > hi_ ? h[j] : hi_;
  }
  for (; i < n; ++i) {
    lo_ = x[i] < lo_ ? x[i] : lo_;
    hi_ = x[i] > hi_ ? x[i] : hi_;
  }
  *lo = lo_;
  *hi = hi_;
}

// Round half up by truncating x / s + z + 0.5 once clamped to [0, 255]: unlike a call to
// nearbyint, this vectorises. The quantisers' last step, on 16 values (v = x / s + z + 0.5)
// or one; in vectors GCC makes it a convert and one narrowing store, where its own
// vectorisation of the scalar form spent more on blends and packs than on the arithmetic.
inline __attribute__((always_inline)) void store_u8(f32x16 v, uint8_t* q) {
  v = v < 0.0f ? 0.0f : v;
  v = v > 255.0f ? 255.0f : v;
  const u8x16 out = __builtin_convertvector(__builtin_convertvector(v, i32x16), u8x16);
  std::memcpy(q, &out, sizeof out);
}
inline uint8_t to_u8(float v) {
  v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
  return static_cast<uint8_t>(static_cast<int32_t>(v));
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void span_quantize(const float* x, int64_t n, float inverse_scale, float offset, uint8_t* q) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    f32x16 v;
    std::memcpy(&v, x + i, sizeof v);
    store_u8(v * inverse_scale + offset, q + i);
  }
  for (; i < n; ++i) q[i] = to_u8(x[i] * inverse_scale + offset);
}

// The sum of a vector's lanes as a tree of halves: a row of ViT-Ti's LayerNorm is only 12
// vectors, and two chains of 16 scalar adds were a third of its time.
typedef float f32x8 __attribute__((vector_size(32)));
typedef float f32x4 __attribute__((vector_size(16)));
inline float lane_sum(f32x16 v) {
  const f32x8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const f32x4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}

// LayerNorm of one row straight into u8 (the calibrated per-tensor quantisation of the matmul
// it feeds): y = (x - mean) / sqrt(var + eps) * g + b, q = clamp(y / s + z + 0.5) truncated,
// as span_quantize (store_u8). The normalised row is never stored in f32: it saves oneDNN's LayerNorm
// pass writing it and the quantiser's reading it back.
__attribute__((target_clones("avx512f", "avx2", "default")))
void span_norm_quantize(const float* x, int64_t n, const float* g, const float* b, float eps, float inverse_scale,
                        float offset, uint8_t* q) {
  f32x16 acc = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    f32x16 v;
    std::memcpy(&v, x + i, sizeof v);
    acc += v;
  }
  float sum = lane_sum(acc);
  for (; i < n; ++i) sum += x[i];
  const float mean = sum / static_cast<float>(n);
  acc = f32x16{};
  i = 0;
  for (; i + 16 <= n; i += 16) {
    f32x16 v;
    std::memcpy(&v, x + i, sizeof v);
    v -= mean;
    acc += v * v;
  }
  float squares = lane_sum(acc);
  for (; i < n; ++i) squares += (x[i] - mean) * (x[i] - mean);
  const float rstd = 1.0f / std::sqrt(squares / static_cast<float>(n) + eps);
  i = 0;
  for (; i + 16 <= n; i += 16) {
    f32x16 v, gv, bv;
    std::memcpy(&v, x + i, sizeof v);
    std::memcpy(&gv, g + i, sizeof gv);
    std::memcpy(&bv, b + i, sizeof bv);
    store_u8(((v - mean) * rstd * gv + bv) * inverse_scale + offset, q + i);
  }
  for (; i < n; ++i) q[i] = to_u8(((x[i] - mean) * rstd * g[i] + b[i]) * inverse_scale + offset);
}

// GELU in place (simd_gelu.hpp), and the span's min and max after it: the pass an int8 fc2
// makes over each row of its input to find the row's scale anyway. oneDNN's GELU post-op on
// fc1 (A&S 7.1.26 with an exponential) costs about a third of int8 fc1 (ViT-Ti, batch 1, one
// thread, DNNL_VERBOSE: 310 us a layer with it, 194 without); here it rides on a pass that
// reads the row from L2 anyway.
__attribute__((target_clones("avx512f", "avx2", "default")))
void span_gelu_min_max(float* x, int64_t n, float* lo, float* hi) {
  f32x16 l = {}, h = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    f32x16 v;
    std::memcpy(&v, x + i, sizeof v);
    gelu_erf16(v);
    std::memcpy(x + i, &v, sizeof v);
    l = v < l ? v : l;
    h = v > h ? v : h;
  }
  if (i < n) {  // the last few through a padded vector
    f32x16 v = {};
    std::memcpy(&v, x + i, static_cast<size_t>(n - i) * sizeof(float));
    gelu_erf16(v);
    std::memcpy(x + i, &v, static_cast<size_t>(n - i) * sizeof(float));
    for (int64_t j = 0; j < n - i; ++j) {
      l[j] = v[j] < l[j] ? v[j] : l[j];
      h[j] = v[j] > h[j] ? v[j] : h[j];
    }
  }
  float lo_ = 0.0f, hi_ = 0.0f;
  for (int j = 0; j < 16; ++j) {
    lo_ = l[j] < lo_ ? l[j] : lo_;
    hi_ = h[j] > hi_ ? h[j] : hi_;
  }
  *lo = lo_;
  *hi = hi_;
}

// A per-row int8 matmul's epilogue for one row: y = s * y + (lo * ws[n] + b[n]) [+ r], where
// oneDNN wrote y = s_w[n] * acc and ws[n] = s_w[n] * colsum_w[n] (see Matmul's per_row).
__attribute__((target_clones("avx512f", "avx2", "default")))
void span_row_epilogue(float* y, int64_t n, float scale, float lo, const float* ws, const float* b, const float* r) {
  if (r) {
    for (int64_t i = 0; i < n; ++i) y[i] = scale * y[i] + (lo * ws[i] + b[i]) + r[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = scale * y[i] + (lo * ws[i] + b[i]);
  }
}

// ---------------------------------------------------------------------------------------
// y[M, N] = x[M, K] @ w^T + b, optionally GELU'd, in the context's precision. Weights are
// packed once into the layout the primitive prefers (shared across batch sizes); bf16
// converts x to bf16, int8 quantises x (asymmetric u8, one scale per tensor: from the
// calibrated range when the node has one, else from this call's min and max; or one per
// row, MatmulOptions::per_row) and w per output channel (symmetric s8). int8 runs on
// vitbatch's own VNNI kernel where the context says so (vnni_gemm.hpp: the epilogue below in
// its tile stores), except with a GELU or bf16 output (oneDNN's post-ops) or K not a multiple
// of 4; bf16 on vitbatch's own AVX512_BF16 kernel where the context says so (bf16_gemm.hpp:
// bias, GELU, residual and bf16 output in its tile stores), K even.
struct MatmulOptions {
  bool gelu = false;
  // Where in the context's scratch (in floats) the matmul may keep its converted input;
  // Matmul::scratch_floats() says how much it needs there.
  size_t scratch_offset = 0;
  const float* range = nullptr;  // x's calibrated [lo, hi] (int8), or null
  bool keep_float = false;       // at int8, run this one in the float fallback
  // y written in bf16, for a following bf16 matmul that takes it as it is (bf16_input):
  // that matmul's conversion pass saved, and half of y's traffic.
  bool bf16_output = false, bf16_input = false;
  // y += r, a residual [M, N] passed to run(): the add after a projection, as a post-op.
  bool residual = false;
  // int8: one scale per row of x (per token) instead of one per tensor, above the calibrated
  // floor where there is one (fc2, whose input GELU bounds below but whose rows' peaks differ
  // too much for one scale: bench/int8_schemes.py). Not with gelu or bf16_output.
  bool per_row = false;
  // Per row only: x is fc1's output before its GELU, which the row scan applies (in place).
  bool gelu_input = false;
  // x is a LayerNorm's input: the matmul normalises each row (weight, bias, eps) as it
  // quantises it. Calibrated per-tensor int8 on the own kernel only (claim_length).
  const float* norm_weight = nullptr;
  const float* norm_bias = nullptr;
  float norm_eps = 0.0f;
};

class Matmul {
 public:
  Matmul(Context& ctx, int64_t M, int64_t K, int64_t N, const float* weights, const float* bias,
         const MatmulOptions& o = {})
      : M_(M), K_(K), N_(N), precision_(matmul_precision(ctx, o.keep_float)), scratch_offset_(o.scratch_offset),
        bf16_input_(o.bf16_input && precision_ == Precision::BF16),
        own_(precision_ == Precision::INT8 && ctx.vnni_int8 && K % 4 == 0 && !o.gelu && !o.bf16_output),
        own_bf16_(precision_ == Precision::BF16 && ctx.bf16_own && K % 2 == 0) {
    const bool gelu = o.gelu;
    const float* range = o.range;
    dt src_type = precision_ == Precision::F32 ? dt::f32 : precision_ == Precision::BF16 ? dt::bf16 : dt::u8;
    dt wei_type = precision_ == Precision::F32 ? dt::f32 : precision_ == Precision::BF16 ? dt::bf16 : dt::s8;
    memory::desc src_md = plain({M, K}, src_type);
    memory::desc wei_md({K, N}, wei_type, tag::any);
    memory::desc dst_md = plain({M, N}, o.bf16_output ? dt::bf16 : dt::f32);
    memory::desc bias_md = plain({1, N}, dt::f32);
    dnnl::primitive_attr attr;
    dnnl::post_ops post;
    per_row_ = o.per_row && precision_ == Precision::INT8;
    gelu_input_ = o.gelu_input;
    if (per_row_ && (gelu || o.bf16_output)) throw std::logic_error("onednn: a per-row int8 matmul has no gelu or bf16 output");
    if (gelu_input_ && !per_row_) throw std::logic_error("onednn: only a per-row int8 matmul applies its input's GELU");
    norm_weight_ = o.norm_weight;
    norm_bias_ = o.norm_bias;
    norm_eps_ = o.norm_eps;
    if (norm_weight_ && !(own_ && range && !per_row_))
      throw std::logic_error("onednn: only a calibrated per-tensor int8 matmul on the VNNI kernel normalises its input");
    if (precision_ == Precision::INT8) {
      channel_scales_ = quantized_scales(weights);
      fixed_ = range != nullptr;
    }
    if (per_row_) {
      // x[m, :] ~ s[m] * q + lo[m], so y = s[m] * (s_w[n] * acc) + lo[m] * s_w[n] * colsum_w[n]
      // + b[n]: oneDNN applies s_w as a constant output scale, and the rest, which varies by
      // row, is vitbatch's own epilogue (oneDNN 2.6's brgemm matmul has no per-row post-op:
      // a [M, 1] binary sends it to its reference kernel). The residual joins the epilogue.
      attr.set_output_scales(1 << 1, channel_scales_);
      if (fixed_) floor_ = std::min(range[0], 0.0f);
    } else if (precision_ == Precision::INT8) {
      // y = s_x * (s_w[n] * acc - z_x * s_w[n] * colsum_w[n]) + b[n], s_w the per-channel
      // weight scales. With a calibrated range all of it is constant: output scales
      // s_x * s_w[n] and one per-channel add (b[n] - s_x * z_x * s_w[n] * colsum_w[n]).
      // Without one, the zero point and s_x change every call; runtime zero points and
      // scales would push oneDNN off its brgemm kernels, so they become binary post-ops
      // fed from memory instead (s_w stays a constant output scale).
      if (fixed_) {
        set_quantization(range[0], range[1]);
        std::vector<float> output_scales(N_);
        for (int64_t c = 0; c < N_; ++c) output_scales[c] = scale_ * channel_scales_[c];
        attr.set_output_scales(1 << 1, output_scales);
        col_scale_ = output_scales;
        post.append_binary(dnnl::algorithm::binary_add, bias_md);  // b - s_x z_x s_w colsum
      } else {
        attr.set_output_scales(1 << 1, channel_scales_);
        post.append_binary(dnnl::algorithm::binary_add, bias_md);                // - z_x s_w colsum
        post.append_binary(dnnl::algorithm::binary_mul, plain({1, 1}, dt::f32));  // * s_x
        if (bias) post.append_binary(dnnl::algorithm::binary_add, bias_md);      // + b
      }
    }
    if (gelu) post.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f);
    if (o.residual && !per_row_ && !own_ && !own_bf16_) {
      residual_index_ = post.len();
      post.append_binary(dnnl::algorithm::binary_add, plain({M, N}, dt::f32));
    }
    attr.set_post_ops(post);
    if (!own_ && !own_bf16_) {
      bool bias_in_matmul = bias && precision_ != Precision::INT8;
      auto desc = bias_in_matmul ? dnnl::matmul::desc(src_md, wei_md, bias_md, dst_md)
                                 : dnnl::matmul::desc(src_md, wei_md, dst_md);
      pd_ = dnnl::matmul::primitive_desc(desc, attr, ctx.engine);
      prim_ = dnnl::matmul(pd_);
    }
    packed_ = pack(ctx, weights, own_ ? Packer::VNNI : own_bf16_ ? Packer::BF16 : Packer::ONEDNN);
    src_ = memory(src_md, ctx.engine, nullptr);
    dst_ = memory(dst_md, ctx.engine, nullptr);
    if (bias) bias_ = memory(bias_md, ctx.engine, const_cast<float*>(bias));
    if (precision_ != Precision::F32) {
      ctx.reserve_scratch(scratch_offset_ + scratch_floats());
      converted_ = memory(src_md, ctx.engine, nullptr);
    }
    if (precision_ == Precision::BF16 && !bf16_input_) {
      f32_src_ = memory(plain({M, K}, dt::f32), ctx.engine, nullptr);
      to_bf16_ = dnnl::reorder(f32_src_, converted_);
    }
    if (per_row_ || own_bf16_) {  // epilogues that add a bias whether the linear has one or not
      bias_or_zeros_.assign(bias ? bias : nullptr, bias ? bias + N_ : nullptr);
      bias_or_zeros_.resize(N_, 0.0f);
    }
    if (per_row_) {
      weight_sums_.resize(N_);
      for (int64_t c = 0; c < N_; ++c) weight_sums_[c] = channel_scales_[c] * static_cast<float>(packed_->column_sums[c]);
      row_scale_.resize(M_);
      row_floor_.resize(M_);
    } else if (precision_ == Precision::INT8) {
      // The per-channel add: b - s_x z_x s_w colsum (calibrated, set below) or - z_x s_w
      // colsum (dynamic, set each call beside s_x; on the own kernel b - s_x z_x s_w colsum,
      // s_x folded into col_scale_).
      channel_add_ = memory(bias_md, ctx.engine);
      if (fixed_) {
        auto* folded = static_cast<float*>(channel_add_.get_data_handle());
        for (int64_t c = 0; c < N_; ++c)
          folded[c] = (bias ? bias[c] : 0.0f) -
                      scale_ * static_cast<float>(zero_point_) * channel_scales_[c] * packed_->column_sums[c];
      } else {
        activation_scale_ = memory(plain({1, 1}, dt::f32), ctx.engine);
        if (own_) col_scale_.resize(N_);
      }
    }
    bf16_epilogue_.gelu = gelu;
    bf16_epilogue_.bf16_output = o.bf16_output;
    if (own_ || own_bf16_) return;  // no oneDNN primitive, nor its arguments
    // The argument map is built once: run() only moves the data handles of these memories.
    args_ = {{DNNL_ARG_WEIGHTS, packed_->weights}, {DNNL_ARG_DST, dst_},
             {DNNL_ARG_SRC, precision_ == Precision::F32 ? src_ : converted_}};
    if (precision_ == Precision::INT8) {
      if (!per_row_) {  // per row, the bias is the epilogue's
        args_[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] = channel_add_;
        if (!fixed_) {
          args_[DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1] = activation_scale_;
          if (bias_) args_[DNNL_ARG_ATTR_MULTIPLE_POST_OP(2) | DNNL_ARG_SRC_1] = bias_;
        }
      }
    } else if (bias_) {
      args_[DNNL_ARG_BIAS] = bias_;
    }
    if (o.residual) {
      residual_ = memory(plain({M, N}, dt::f32), ctx.engine, nullptr);
      args_[DNNL_ARG_ATTR_MULTIPLE_POST_OP(residual_index_) | DNNL_ARG_SRC_1] = residual_;
    }
  }

  // Floats of scratch this matmul needs for its converted input (bf16: 2 bytes, int8: 1).
  size_t scratch_floats() const {
    return precision_ == Precision::F32 || bf16_input_ ? 0 : static_cast<size_t>(M_ * K_ * (precision_ == Precision::BF16 ? 2 : 1) + 3) / 4;
  }

  // x: f32, or bf16 where the matmul was made with bf16_input; y: as bf16_output says;
  // residual: [M, N] where made with residual.
  void run(Context& ctx, const void* x, void* y, const float* residual = nullptr) {
    dst_.set_data_handle(y);
    if (residual_index_ >= 0) residual_.set_data_handle(const_cast<float*>(residual));
    if (precision_ != Precision::F32) converted_.set_data_handle(ctx.scratch.data() + scratch_offset_);
    if (precision_ == Precision::F32) {
      src_.set_data_handle(const_cast<void*>(x));
    } else if (bf16_input_) {
      converted_.set_data_handle(const_cast<void*>(x));
    } else if (precision_ == Precision::BF16) {
      f32_src_.set_data_handle(const_cast<void*>(x));
      to_bf16_.execute(ctx.stream, f32_src_, converted_);
    } else if (per_row_) {
      quantize_rows(static_cast<const float*>(x));
    } else if (norm_weight_) {
      normalize_quantize(static_cast<const float*>(x));
    } else {
      quantize(static_cast<const float*>(x));
    }
    if (own_) {
      run_own(static_cast<float*>(y), residual);
      return;
    }
    if (own_bf16_) {
      Bf16Epilogue e = bf16_epilogue_;
      e.bias = bias_or_zeros_.data();
      e.residual = residual;
      bf16_gemm(static_cast<const uint16_t*>(converted_.get_data_handle()), M_, K_, *packed_->bf16, e, y);
      return;
    }
    prim_.execute(ctx.stream, args_);
    if (per_row_) finish_rows(static_cast<float*>(y), residual);
  }

 private:
  // y from the quantised x in scratch on the own kernel: the epilogue's terms by mode
  // (MatmulOptions: per row; per tensor, calibrated or per call, whose per-channel add is the
  // one oneDNN's post-op would take).
  void run_own(float* y, const float* residual) {
    VnniEpilogue e;
    e.col_scale = per_row_ ? channel_scales_.data() : col_scale_.data();
    e.col_add = per_row_ ? bias_or_zeros_.data() : static_cast<const float*>(channel_add_.get_data_handle());
    if (per_row_) {
      e.row_scale = row_scale_.data();
      e.row_offset = row_floor_.data();
      e.col_weight = weight_sums_.data();
    }
    e.residual = residual;
    vnni_gemm(static_cast<const uint8_t*>(converted_.get_data_handle()), M_, K_, *packed_->vnni, e, y);
  }

  std::shared_ptr<PackedWeights> pack(Context& ctx, const float* w, Packer packer) {
    const memory::desc want = packer == Packer::ONEDNN ? pd_.weights_desc() : memory::desc();
    PackCache& shared = pack_cache();
    // Held while packing: a lane preparing the same weights waits, then finds them.
    std::lock_guard<std::mutex> lock(shared.mutex);
    auto& cache = shared.entries;
    cache.erase(std::remove_if(cache.begin(), cache.end(), [](const auto& e) { return e.second.expired(); }), cache.end());
    for (auto& [key, weak] : cache)
      if (key.weights == w && key.packer == packer && key.layout == want)
        if (auto found = weak.lock()) return found;  // (its last kernel may go meanwhile)
    auto packed = std::make_shared<PackedWeights>();
    if (packer == Packer::ONEDNN) packed->weights = memory(want, ctx.engine);
    memory::desc torch_layout({K_, N_}, dt::f32, tag::ba);  // w is [N, K] row-major
    if (packer == Packer::BF16) {
      packed->bf16 = std::make_unique<Bf16Weights>(w, N_, K_);
    } else if (precision_ != Precision::INT8) {
      memory user(torch_layout, ctx.engine, const_cast<float*>(w));
      dnnl::reorder(user, packed->weights).execute(ctx.stream, user, packed->weights);
    } else {
      std::vector<int8_t> q(static_cast<size_t>(N_ * K_));
      packed->column_sums.assign(N_, 0);
      for (int64_t n = 0; n < N_; ++n)
        packed->column_sums[n] = span_quantize_weights(w + n * K_, K_, channel_scales_[n], q.data() + n * K_);
      if (own_) {
        packed->vnni = std::make_unique<VnniWeights>(q.data(), N_, K_);
      } else {
        memory user(memory::desc({K_, N_}, dt::s8, tag::ba), ctx.engine, q.data());
        dnnl::reorder(user, packed->weights).execute(ctx.stream, user, packed->weights);
      }
    }
    ctx.stream.wait();
    cache.push_back({{w, packer, want}, packed});
    return packed;
  }

  // Asymmetric per-tensor u8: x ~ scale * (q - zero_point), 0 always exact. The two passes
  // run on each thread's share through kernels cloned for AVX-512 and AVX2.
  // Values outside a calibrated range clamp to it.
  void quantize(const float* x) {
    const int64_t n = M_ * K_;
    if (!fixed_) {
      float lo = 0.0f, hi = 0.0f;
#pragma omp parallel reduction(min : lo) reduction(max : hi)
      {
        auto [begin, end] = share(n);
        float part_lo = 0.0f, part_hi = 0.0f;
        span_min_max(x + begin, end - begin, &part_lo, &part_hi);
        lo = std::min(lo, part_lo);
        hi = std::max(hi, part_hi);
      }
      set_quantization(lo, hi);
      set_dynamic_post_ops();
    }
    auto* q = static_cast<uint8_t*>(converted_.get_data_handle());
    const float inverse = 1.0f / scale_, offset = static_cast<float>(zero_point_) + 0.5f;
#pragma omp parallel
    {
      auto [begin, end] = share(n);
      span_quantize(x + begin, end - begin, inverse, offset, q + begin);
    }
  }

  // The input LayerNorm and the calibrated quantisation in one pass, each thread on its rows.
  void normalize_quantize(const float* x) {
    auto* q = static_cast<uint8_t*>(converted_.get_data_handle());
    const float inverse = 1.0f / scale_, offset = static_cast<float>(zero_point_) + 0.5f;
#pragma omp parallel
    {
      auto [begin, end] = share(M_);
      for (int64_t m = begin; m < end; ++m)
        span_norm_quantize(x + m * K_, K_, norm_weight_, norm_bias_, norm_eps_, inverse, offset, q + m * K_);
    }
  }

  // Per row: lo[m] the calibrated floor (values below it clamp to it) or, without one, the
  // row's minimum (or 0); s[m] = (max - lo[m]) / 255; q = round half up of (x - lo[m]) / s[m].
  void quantize_rows(const float* x) {
    auto* q = static_cast<uint8_t*>(converted_.get_data_handle());
#pragma omp parallel
    {
      auto [begin, end] = share(M_);
      for (int64_t m = begin; m < end; ++m) {
        float lo = 0.0f, hi = 0.0f;
        // (gelu_input: x is the MLP's own hidden scratch, written in place)
        if (gelu_input_) span_gelu_min_max(const_cast<float*>(x) + m * K_, K_, &lo, &hi);
        else span_min_max(x + m * K_, K_, &lo, &hi);
        if (fixed_) lo = floor_;
        const float s = hi > lo ? (hi - lo) / 255.0f : 1.0f, inverse = 1.0f / s;
        row_scale_[m] = s;
        row_floor_[m] = lo;
        span_quantize(x + m * K_, K_, inverse, 0.5f - lo * inverse, q + m * K_);
      }
    }
  }

  // The epilogue of a per-row matmul, each thread on its own rows (still in its cache).
  void finish_rows(float* y, const float* residual) {
#pragma omp parallel
    {
      auto [begin, end] = share(M_);
      for (int64_t m = begin; m < end; ++m)
        span_row_epilogue(y + m * N_, N_, row_scale_[m], row_floor_[m], weight_sums_.data(), bias_or_zeros_.data(),
                          residual ? residual + m * N_ : nullptr);
    }
  }

  // The scale and zero point for x in [lo, hi] (widened to hold 0, so 0 stays exact).
  void set_quantization(float lo, float hi) {
    lo = std::min(lo, 0.0f);
    hi = std::max(hi, 0.0f);
    scale_ = hi > lo ? (hi - lo) / 255.0f : 1.0f;
    zero_point_ = std::max(0, std::min(255, static_cast<int32_t>(std::nearbyint(-lo / scale_))));
  }

  // Without a calibrated range: this call's scale and zero point into the post-op inputs.
  void set_dynamic_post_ops() {
    if (own_) {  // the same terms folded: y = (s_x s_w) acc + (b - s_x z_x s_w colsum)
      const float* b = bias_ ? static_cast<const float*>(bias_.get_data_handle()) : nullptr;
      auto* add = static_cast<float*>(channel_add_.get_data_handle());
      for (int64_t c = 0; c < N_; ++c) {
        col_scale_[c] = scale_ * channel_scales_[c];
        add[c] = (b ? b[c] : 0.0f) - scale_ * static_cast<float>(zero_point_) * channel_scales_[c] *
                                              static_cast<float>(packed_->column_sums[c]);
      }
      return;
    }
    auto* comp = static_cast<float*>(channel_add_.get_data_handle());
    for (int64_t c = 0; c < N_; ++c)
      comp[c] = -static_cast<float>(zero_point_) * channel_scales_[c] * packed_->column_sums[c];
    *static_cast<float*>(activation_scale_.get_data_handle()) = scale_;
  }

  // Symmetric per-output-channel scales for w [N, K]: max |w[n, :]| / 127.
  std::vector<float> quantized_scales(const float* w) const {
    std::vector<float> scales(N_);
    for (int64_t n = 0; n < N_; ++n) {
      const float mx = span_abs_max(w + n * K_, K_);
      scales[n] = mx > 0 ? mx / 127.0f : 1.0f;
    }
    return scales;
  }

  int64_t M_, K_, N_;
  Precision precision_;
  size_t scratch_offset_;
  bool bf16_input_;
  bool own_;                          // int8 on vnni_gemm, not a oneDNN primitive
  bool own_bf16_;                     // bf16 on bf16_gemm, not a oneDNN primitive
  Bf16Epilogue bf16_epilogue_;       // bf16_gemm's terms (run() adds the bias and residual)
  std::vector<float> col_scale_;      // own, per tensor: s_x s_w (calibrated, or this call's)
  int residual_index_ = -1;  // the residual's post-op, if any
  dnnl::matmul::primitive_desc pd_;
  dnnl::matmul prim_;
  std::shared_ptr<PackedWeights> packed_;
  std::vector<float> channel_scales_;  // int8: s_w
  bool fixed_ = false;                 // int8: a calibrated range, folded in at construction
  bool per_row_ = false;               // int8: a scale per row of x (MatmulOptions::per_row)
  bool gelu_input_ = false;            // per row: GELU applied to x in the row scan
  float floor_ = 0.0f;                 // per row: the calibrated floor of x
  const float* norm_weight_ = nullptr;  // the input's LayerNorm (MatmulOptions::norm_weight)
  const float* norm_bias_ = nullptr;
  float norm_eps_ = 0.0f;
  std::vector<float> bias_or_zeros_;  // per row and bf16_gemm: b, or zeros for a linear without one
  std::vector<float> weight_sums_, row_scale_, row_floor_;  // per row: s_w * colsum, s[m], lo[m]
  float scale_ = 1.0f;
  int32_t zero_point_ = 0;
  memory src_, dst_, bias_, converted_, f32_src_, channel_add_, activation_scale_, residual_;
  dnnl::reorder to_bf16_;
  std::unordered_map<int, memory> args_;
};

// The nodes of a linear's or MLP's step: the node itself, or a claimed run (claim_length) of
// an optional LayerNorm before it, the linear or MLP, and an optional residual add after it.
struct Step {
  const vit_node* norm = nullptr;
  const vit_node* core = nullptr;
  const vit_node* add = nullptr;
};

Step step_of(const vit_node& n) {
  if (n.op != VIT_OP_FUSED) return {nullptr, &n, nullptr};
  Step s;
  int32_t i = 0;
  if (n.fused[0].op == VIT_OP_LAYER_NORM) s.norm = &n.fused[i++];
  s.core = &n.fused[i++];
  if (i < n.n_fused) s.add = &n.fused[i];
  return s;
}

// Where a step reads its input and writes its output this run; the values inside the run
// must have no buffer (nothing else reads them: claim_length checked).
struct StepData {
  const void* x;
  void* y;
  const float* residual;
};

StepData step_data(const Step& s, int residual_at) {
  if (s.norm && s.norm->outputs[0].data) throw std::runtime_error("onednn: a fused LayerNorm's own output is read later");
  if (s.add && s.core->outputs[0].data) throw std::runtime_error("onednn: a fused matmul's own output is read later");
  return {s.norm ? s.norm->inputs[0].data : s.core->inputs[0].data, s.add ? s.add->outputs[0].data : s.core->outputs[0].data,
          s.add ? static_cast<const float*>(s.add->inputs[residual_at].data) : nullptr};
}

// A step's LayerNorm, for the matmul that normalises its input as it quantises it.
void set_norm(MatmulOptions& o, const vit_node* norm) {
  if (!norm) return;
  o.norm_weight = static_cast<const float*>(norm->inputs[1].data);
  o.norm_bias = static_cast<const float*>(norm->inputs[2].data);
  o.norm_eps = norm->floats[0];
}

// linear; in a claimed run, its LayerNorm before it (applied as its input is quantised) and
// the add of a residual after it (a post-op).
class LinearKernel : public Kernel {
 public:
  LinearKernel(Context& ctx, const Step& s)
      : residual_at_(s.add ? vit_plugin::residual_input(*s.add, s.core->output_id) : -1),
        mm_(ctx, rows_of(s.core->inputs[0]), s.core->inputs[1].shape[1], s.core->inputs[1].shape[0],
            static_cast<const float*>(s.core->inputs[1].data),
            s.core->n_inputs > 2 ? static_cast<const float*>(s.core->inputs[2].data) : nullptr, options(s)) {}
  void run(Context& ctx, const vit_node& n) override {
    const StepData d = step_data(step_of(n), residual_at_);
    mm_.run(ctx, d.x, d.y, d.residual);
  }

 private:
  static MatmulOptions options(const Step& s) {
    const vit_node& n = *s.core;
    MatmulOptions o;
    o.range = n.ints[0] ? n.floats : nullptr;
    o.keep_float = n.ints[0] && n.ints[1];
    o.residual = s.add != nullptr;
    set_norm(o, s.norm);
    return o;
  }

  int residual_at_;
  Matmul mm_;
};

// fc2(gelu(fc1(x))): GELU fused into fc1 as a post-op, or, where fc2 runs in int8, into the
// scan fc2 makes of each row to find its scale (span_gelu_min_max); the hidden activations
// live in the context's scratch, followed by the matmuls' converted inputs. Where fc2 runs in
// bf16 (bf16, or int8 with fc2 kept in bf16), fc1 writes the hidden activations in bf16
// straight away.
// In a claimed run, fc2 adds the residual after it as a post-op, and fc1 applies the
// LayerNorm before it as it quantises its input (calibrated int8).
// Where both run in calibrated int8, fc2 quantises its input per row, so the rows are
// independent: they go through in blocks whose hidden activations stay in the core's L2
// (fc1 writes them in f32, fc2 reads them twice, to find each row's scale and to quantise),
// instead of a batch-sized f32 round trip through memory.
class MlpKernel : public Kernel {
 public:
  MlpKernel(Context& ctx, const Step& s)
      : M_(rows_of(s.core->inputs[0])),
        K_(s.core->inputs[1].shape[1]),
        H_(s.core->inputs[1].shape[0]),
        N_(s.core->inputs[3].shape[0]),
        block_(block_rows(ctx, *s.core, M_, H_)),
        hidden_floats_(static_cast<size_t>(block_ * H_)),
        hidden_bf16_(matmul_precision(ctx, s.core->ints[0] && (s.core->ints[1] & 2)) == Precision::BF16),
        gelu_in_fc2_(matmul_precision(ctx, s.core->ints[0] && (s.core->ints[1] & 2)) == Precision::INT8),
        residual_at_(s.add ? vit_plugin::residual_input(*s.add, s.core->output_id) : -1),
        fc1_(make(ctx, s, 0, block_)),
        fc2_(make(ctx, s, 1, block_)) {
    if (M_ % block_) {
      fc1_tail_ = make(ctx, s, 0, M_ % block_);
      fc2_tail_ = make(ctx, s, 1, M_ % block_);
    }
    ctx.reserve_scratch(hidden_floats_ + std::max(fc1_->scratch_floats(), fc2_->scratch_floats()));
  }
  void run(Context& ctx, const vit_node& n) override {
    float* hidden = ctx.scratch.data();
    const StepData d = step_data(step_of(n), residual_at_);
    auto* y = static_cast<float*>(d.y);
    const float* residual = d.residual;
    // One block of all rows, or blocks of block_ rows and a remainder (the MLP's input and
    // output are f32 tensors).
    const auto* x = static_cast<const float*>(d.x);
    for (int64_t r = 0; r < M_; r += block_) {
      const bool full = M_ - r >= block_;
      Matmul& fc1 = full ? *fc1_ : *fc1_tail_;
      Matmul& fc2 = full ? *fc2_ : *fc2_tail_;
      fc1.run(ctx, x + r * K_, hidden);
      fc2.run(ctx, hidden, y + r * N_, residual ? residual + r * N_ : nullptr);
    }
  }

 private:
  // Rows a block: all of them, unless fc1 and fc2 both run calibrated int8 and there are more
  // than two blocks' worth; then as many as keep a block's f32 hidden activations within
  // 512 KiB (a multiple of 16, at least 32). ViT-Ti at batch 1 (197 rows of 768) stays whole:
  // split, its four smaller calls cost more than the traffic they save.
  static int64_t block_rows(const Context& ctx, const vit_node& n, int64_t M, int64_t H) {
    const bool blocked = ctx.precision == Precision::INT8 && n.ints[0] && !(n.ints[1] & 3);
    const int64_t rows = std::max<int64_t>(32, (int64_t{512 * 1024} / (4 * H)) / 16 * 16);
    return blocked && M > 2 * rows ? rows : M;
  }

  // fc1 (layer 0) or fc2 (1) for `rows` rows: its calibrated range and int8 exemption
  // (vit_ops.def's mlp), the hidden activations' type between them, the step's LayerNorm on
  // fc1's input, its residual on fc2.
  std::unique_ptr<Matmul> make(Context& ctx, const Step& s, int layer, int64_t rows) const {
    const vit_node& n = *s.core;
    MatmulOptions o;
    if (layer == 0) set_norm(o, s.norm);
    const bool residual = layer == 1 && s.add != nullptr;
    o.scratch_offset = hidden_floats_;
    o.range = n.ints[0] ? n.floats + 2 * layer : nullptr;
    o.keep_float = n.ints[0] && (n.ints[1] & (1 << layer));
    // Where fc2 runs in int8 (per row), its row scan applies the GELU instead of fc1's post-op.
    o.gelu = layer == 0 && !gelu_in_fc2_;
    o.gelu_input = layer == 1 && gelu_in_fc2_;
    o.bf16_output = layer == 0 && hidden_bf16_;
    o.bf16_input = layer == 1 && hidden_bf16_;
    o.residual = residual;
    o.per_row = layer == 1;
    const vit_tensor& w = n.inputs[layer == 0 ? 1 : 3];
    const vit_tensor& b = n.inputs[layer == 0 ? 2 : 4];
    return std::make_unique<Matmul>(ctx, rows, w.shape[1], w.shape[0], static_cast<const float*>(w.data),
                                    static_cast<const float*>(b.data), o);
  }

  int64_t M_, K_, H_, N_, block_;
  size_t hidden_floats_;
  bool hidden_bf16_, gelu_in_fc2_;
  int residual_at_;
  std::unique_ptr<Matmul> fc1_, fc2_, fc1_tail_, fc2_tail_;
};

// The extras of vit_ops.def's attention: q/k LayerNorm and rope rewrite q and k per token
// before the products (a pass over a copy of qkv), the score bias [heads, T, T] is added to
// the scores. Each takes its inputs' positions from ints[1].
struct AttentionExtras {
  bool qk_norm = false, rope = false, bias = false, rope_half = false;
  int64_t rope_skip = 0;
  int norm_at = 1, rope_at = 1, bias_at = 1;
  explicit AttentionExtras(const vit_node& n) {
    qk_norm = n.ints[1] & 1;
    bias = n.ints[1] & 2;
    rope = n.ints[1] & 4;
    rope_skip = n.ints[2];
    rope_half = n.ints[3] != 0;
    rope_at = qk_norm ? 5 : 1;
    bias_at = rope_at + (rope ? 2 : 0);
  }
  bool rewrites_qk() const { return qk_norm || rope; }
};

// q and k of every head of rows [begin, end) of qkv [rows, 3*D], in place.
void rewrite_qk(const vit_node& n, const AttentionExtras& x, float* qkv, int64_t rows, int64_t T, int64_t D, int64_t H) {
  const int64_t hd = D / H;
  const float eps = n.floats[1];
#pragma omp parallel for
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t t = row % T;
    std::vector<float> rotated(static_cast<size_t>(hd));
    for (int part = 0; part < 2; ++part)
      for (int64_t h = 0; h < H; ++h) {
        float* v = qkv + row * 3 * D + part * D + h * hd;
        if (x.qk_norm) {
          const float* gamma = static_cast<const float*>(n.inputs[1 + 2 * part].data);
          const float* beta = static_cast<const float*>(n.inputs[2 + 2 * part].data);
          double mean = 0, var = 0;
          for (int64_t e = 0; e < hd; ++e) mean += v[e];
          mean /= double(hd);
          for (int64_t e = 0; e < hd; ++e) var += (v[e] - mean) * (v[e] - mean);
          const double inv = 1.0 / std::sqrt(var / double(hd) + eps);
          for (int64_t e = 0; e < hd; ++e) v[e] = static_cast<float>((v[e] - mean) * inv * gamma[e] + beta[e]);
        }
        if (x.rope && t >= x.rope_skip) {
          const float* sin = static_cast<const float*>(n.inputs[x.rope_at].data) + (t - x.rope_skip) * hd;
          const float* cos = static_cast<const float*>(n.inputs[x.rope_at + 1].data) + (t - x.rope_skip) * hd;
          for (int64_t e = 0; e < hd; ++e)
            rotated[e] = x.rope_half ? (e < hd / 2 ? -v[e + hd / 2] : v[e - hd / 2]) : (e % 2 == 0 ? -v[e + 1] : v[e - 1]);
          for (int64_t e = 0; e < hd; ++e) v[e] = v[e] * cos[e] + rotated[e] * sin[e];
        }
      }
  }
}

// Multi-head attention on packed qkv [B, T, 3D] in one fused pass per (image, head, block
// of 16 queries) on the threads' own scratch (fused_attention.hpp): no [T, T] score matrix
// in memory, no copy of qkv, no per-image primitive calls and barriers (oneDNN's matmul,
// softmax, matmul per image, which this replaced, left one of 2 threads idle a third of the
// time on ViT-Ti's 3 heads). fp32 in fp32; bf16 and int8 on vdpbf16ps where the CPU has
// AVX512_BF16, taking a head's blocks in one call that converts its K and V once.
class AttentionKernel : public Kernel {
 public:
  AttentionKernel(Context& ctx, const vit_node& n) : extras_(n) {
    B_ = n.inputs[0].shape[0];
    shape_.T = n.inputs[0].shape[1];
    shape_.D = n.inputs[0].shape[2] / 3;
    shape_.heads = n.ints[0];
    shape_.scale = n.floats[0];
    const int64_t hd = shape_.D / shape_.heads;
    bf16_ = ctx.precision != Precision::F32 && hd % 2 == 0 && has_bf16_attention();
    blocks_ = (shape_.T + kQueryBlock - 1) / kQueryBlock;
    // bf16: enough tasks per head for the threads to share even one image's few heads.
    groups_ = bf16_ ? std::clamp<int64_t>((4 * ctx.threads + B_ * shape_.heads - 1) / (B_ * shape_.heads), 1, blocks_)
                    : blocks_;
    per_thread_ = bf16_ ? attention_head_bf16_floats(shape_) : attention_block_floats(shape_);
    size_t copy = extras_.rewrites_qk() ? static_cast<size_t>(B_ * shape_.T * 3 * shape_.D) : 0;
    ctx.reserve_scratch(copy + per_thread_ * static_cast<size_t>(ctx.threads));
    work_offset_ = copy;
  }
  void run(Context& ctx, const vit_node& n) override {
    const int64_t T = shape_.T, D = shape_.D, H = shape_.heads, blocks = blocks_, groups = groups_;
    const float* qkv = static_cast<const float*>(n.inputs[0].data);
    auto* out = static_cast<float*>(n.outputs[0].data);
    float* scratch = ctx.scratch.data();
    if (extras_.rewrites_qk()) {  // q/k norm and rope on a copy: the input is not ours to change
      std::memcpy(scratch, qkv, static_cast<size_t>(B_ * T * 3 * D) * sizeof(float));
      rewrite_qk(n, extras_, scratch, B_ * T, T, D, H);
      qkv = scratch;
    }
    const float* bias = extras_.bias ? static_cast<const float*>(n.inputs[extras_.bias_at].data) : nullptr;
    const int64_t tasks = B_ * H * groups;
    float* work = scratch + work_offset_;
    const size_t per_thread = per_thread_;
    const AttentionShape shape = shape_;
    const bool bf16 = bf16_;
#pragma omp parallel num_threads(ctx.threads)
    {
      float* mine = work + per_thread * static_cast<size_t>(omp_get_thread_num());
#pragma omp for schedule(static)
      for (int64_t task = 0; task < tasks; ++task) {
        const int64_t b = task / (H * groups), h = task / groups % H, g = task % groups;
        if (bf16)
          attention_head_bf16(shape, qkv + b * T * 3 * D, bias, h, g * blocks / groups, (g + 1) * blocks / groups,
                              out + b * T * D, mine);
        else
          attention_block(shape, qkv + b * T * 3 * D, bias, h, g * kQueryBlock, out + b * T * D, mine);
      }
    }
  }

 private:
  AttentionExtras extras_;
  AttentionShape shape_;
  int64_t B_ = 0, blocks_ = 0, groups_ = 0;
  bool bf16_ = false;
  size_t per_thread_ = 0, work_offset_ = 0;
};

// A oneDNN primitive whose arguments are the node's tensors, bound by position: the
// memories and the argument map are made once, run() only points them at the tensors.
class BoundPrimitive : public Kernel {
 public:
  static constexpr int kOutput = -1;

  explicit BoundPrimitive(dnnl::primitive primitive) : primitive_(std::move(primitive)) {}

  // `tensor`: the node's input index, or kOutput.
  BoundPrimitive& bind(Context& ctx, int argument, const memory::desc& md, int tensor) {
    memory m(md, ctx.engine, nullptr);
    bindings_.emplace_back(tensor, m);
    args_[argument] = m;
    return *this;
  }

  void run(Context& ctx, const vit_node& n) override {
    for (auto& [tensor, m] : bindings_) m.set_data_handle(tensor == kOutput ? n.outputs[0].data : n.inputs[tensor].data);
    primitive_.execute(ctx.stream, args_);
  }

 private:
  dnnl::primitive primitive_;
  std::vector<std::pair<int, memory>> bindings_;
  std::unordered_map<int, memory> args_;
};

// C = A @ B (or A @ B^T) over leading batch dims, B^T as a strided view.
std::unique_ptr<Kernel> batch_matmul(Context& ctx, const vit_node& n) {
  const vit_tensor &a = n.inputs[0], &b = n.inputs[1];
  memory::dims bd = dims_of(b), strides = plain_strides(bd);
  if (n.ints[0]) {  // b is [..., N, K]: view it as [..., K, N]
    std::swap(bd[b.rank - 1], bd[b.rank - 2]);
    std::swap(strides[b.rank - 1], strides[b.rank - 2]);
  }
  memory::desc b_md(bd, dt::f32, strides);
  memory::desc a_md = plain(dims_of(a), dt::f32), c_md = plain(dims_of(n.outputs[0]), dt::f32);
  auto k = std::make_unique<BoundPrimitive>(
      dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), ctx.engine)));
  k->bind(ctx, DNNL_ARG_SRC, a_md, 0).bind(ctx, DNNL_ARG_WEIGHTS, b_md, 1).bind(ctx, DNNL_ARG_DST, c_md, BoundPrimitive::kOutput);
  return k;
}

std::unique_ptr<Kernel> layer_norm(Context& ctx, const vit_node& n) {
  memory::desc x = plain({rows_of(n.inputs[0]), n.inputs[0].shape[n.inputs[0].rank - 1]}, dt::f32);
  memory::desc param = plain({n.inputs[1].shape[0]}, dt::f32);
  auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
  auto k = std::make_unique<BoundPrimitive>(dnnl::layer_normalization_forward(dnnl::layer_normalization_forward::primitive_desc(
      dnnl::layer_normalization_forward::desc(dnnl::prop_kind::forward_inference, x, n.floats[0], flags), ctx.engine)));
  k->bind(ctx, DNNL_ARG_SRC, x, 0).bind(ctx, DNNL_ARG_SCALE, param, 1).bind(ctx, DNNL_ARG_SHIFT, param, 2);
  k->bind(ctx, DNNL_ARG_DST, x, BoundPrimitive::kOutput);
  return k;
}

// slice: a reorder from a strided view of the input (the slice's dims, the input's strides,
// starting at the first element kept) into the output. Gated MLPs slice fc1's output in two
// every block, so this is not the rare data movement at the ends of the graph.
class SliceKernel : public Kernel {
 public:
  SliceKernel(Context& ctx, const vit_node& n) {
    memory::dims out_dims = dims_of(n.outputs[0]), strides = plain_strides(dims_of(n.inputs[0]));
    offset_ = static_cast<size_t>(n.ints[1] * strides[static_cast<size_t>(n.ints[0])]);
    memory::desc from(out_dims, dt::f32, strides), to = plain(out_dims, dt::f32);
    from_ = memory(from, ctx.engine, nullptr);
    to_ = memory(to, ctx.engine, nullptr);
    reorder_ = dnnl::reorder(dnnl::reorder::primitive_desc(ctx.engine, from, ctx.engine, to));
  }
  void run(Context& ctx, const vit_node& n) override {
    from_.set_data_handle(static_cast<float*>(n.inputs[0].data) + offset_);
    to_.set_data_handle(n.outputs[0].data);
    reorder_.execute(ctx.stream, from_, to_);
  }

 private:
  size_t offset_ = 0;
  memory from_, to_;
  dnnl::reorder reorder_;
};

// concat: each input's run along the axis copied into place, one memcpy per (leading index,
// input); an input whose first dim is 1 where the output's is N (a class token) copied into
// every image. On the reference backend, where it ran before, xtensor's strided copy of
// ViT-Ti's tokens took 1.2% of its int8 time (perf, batch 16, a Zen 5 EPYC).
class ConcatKernel : public Kernel {
 public:
  explicit ConcatKernel(const vit_node& n) {
    const vit_tensor& out = n.outputs[0];
    const int64_t axis = n.ints[0];
    images_ = out.shape[0];
    for (int64_t d = 1; d < axis; ++d) outer_ *= out.shape[d];
    for (int64_t d = axis + 1; d < out.rank; ++d) inner_ *= out.shape[d];
    row_ = out.shape[axis] * inner_;
  }
  void run(Context&, const vit_node& n) override {
    auto* out = static_cast<float*>(n.outputs[0].data);
    const int64_t axis = n.ints[0];
    for (int64_t b = 0; b < images_; ++b)
      for (int64_t o = 0; o < outer_; ++o) {
        float* to = out + (b * outer_ + o) * row_;
        for (int32_t i = 0; i < n.n_inputs; ++i) {
          const vit_tensor& in = n.inputs[i];
          const int64_t run = in.shape[axis] * inner_, image = in.shape[0] == 1 ? 0 : b;
          std::memcpy(to, static_cast<const float*>(in.data) + (image * outer_ + o) * run,
                      static_cast<size_t>(run) * sizeof(float));
          to += run;
        }
      }
  }

 private:
  int64_t images_ = 0, outer_ = 1, inner_ = 1, row_ = 0;
};

// add, mul: b broadcast over a (vit_ops.def); a per-channel b [D] is seen as [1, .., 1, D].
std::unique_ptr<Kernel> binary(Context& ctx, const vit_node& n) {
  memory::dims bd = dims_of(n.inputs[1]);
  bd.insert(bd.begin(), n.inputs[0].rank - n.inputs[1].rank, 1);
  memory::desc a = plain(dims_of(n.inputs[0]), dt::f32), b = plain(bd, dt::f32);
  auto algorithm = n.op == VIT_OP_MUL ? dnnl::algorithm::binary_mul : dnnl::algorithm::binary_add;
  auto k = std::make_unique<BoundPrimitive>(dnnl::binary(
      dnnl::binary::primitive_desc(dnnl::binary::desc(algorithm, a, b, a), ctx.engine)));
  k->bind(ctx, DNNL_ARG_SRC_0, a, 0).bind(ctx, DNNL_ARG_SRC_1, b, 1).bind(ctx, DNNL_ARG_DST, a, BoundPrimitive::kOutput);
  return k;
}

// One-input primitives over the whole tensor: GELU, SCALE (eltwise), SOFTMAX, PATCHIFY (a
// reorder from a strided view of the image to the patch layout).
std::unique_ptr<Kernel> unary(Context& ctx, const vit_node& n) {
  memory::desc in = plain(dims_of(n.inputs[0]), dt::f32), out = plain(dims_of(n.outputs[0]), dt::f32);
  using dnnl::prop_kind;
  auto eltwise = [&](dnnl::algorithm algorithm, float alpha) {
    return dnnl::eltwise_forward(dnnl::eltwise_forward::primitive_desc(
        dnnl::eltwise_forward::desc(prop_kind::forward_inference, algorithm, in, alpha, 0.0f), ctx.engine));
  };
  dnnl::primitive primitive;
  int from = DNNL_ARG_SRC, to = DNNL_ARG_DST;
  switch (n.op) {
    case VIT_OP_GELU: primitive = eltwise(dnnl::algorithm::eltwise_gelu_erf, 0.0f); break;
    case VIT_OP_GELU_TANH: primitive = eltwise(dnnl::algorithm::eltwise_gelu_tanh, 0.0f); break;
    case VIT_OP_QUICK_GELU: primitive = eltwise(dnnl::algorithm::eltwise_swish, 1.702f); break;
    case VIT_OP_SILU: primitive = eltwise(dnnl::algorithm::eltwise_swish, 1.0f); break;
    case VIT_OP_REDUCE_MEAN: case VIT_OP_REDUCE_MAX: {
      // oneDNN refuses a reduction over a length-1 axis: that is a copy.
      if (n.inputs[0].shape[n.ints[0]] == 1) {
        primitive = eltwise(dnnl::algorithm::eltwise_linear, 1.0f);
        break;
      }
      memory::dims kept = dims_of(n.inputs[0]);
      kept[n.ints[0]] = 1;  // the output is the input with the axis reduced to 1, dropped
      out = plain(kept, dt::f32);
      auto algorithm = n.op == VIT_OP_REDUCE_MEAN ? dnnl::algorithm::reduction_mean : dnnl::algorithm::reduction_max;
      primitive = dnnl::reduction(dnnl::reduction::primitive_desc(dnnl::reduction::desc(algorithm, in, out, 0.0f, 0.0f), ctx.engine));
      break;
    }
    case VIT_OP_SCALE: primitive = eltwise(dnnl::algorithm::eltwise_linear, n.floats[0]); break;
    case VIT_OP_SOFTMAX:
      primitive = dnnl::softmax_forward(dnnl::softmax_forward::primitive_desc(
          dnnl::softmax_forward::desc(prop_kind::forward_inference, in, n.inputs[0].rank - 1), ctx.engine));
      break;
    case VIT_OP_PATCHIFY: {
      // x[N, C, gh*p, gw*p] seen as [N, gh, gw, C, p, p] with the image's strides.
      const vit_tensor& x = n.inputs[0];
      int64_t N = x.shape[0], C = x.shape[1], Hh = x.shape[2], W = x.shape[3], p = n.ints[0];
      memory::dims view{N, Hh / p, W / p, C, p, p};
      in = memory::desc(view, dt::f32, memory::dims{C * Hh * W, p * W, p, Hh * W, W, 1});
      out = plain(view, dt::f32);
      primitive = dnnl::reorder(dnnl::reorder::primitive_desc(ctx.engine, in, ctx.engine, out));
      from = DNNL_ARG_FROM, to = DNNL_ARG_TO;
      break;
    }
    default:
      throw std::runtime_error(std::string("onednn: no unary kernel for ") + vit_plugin::op_name(n.op));
  }
  auto k = std::make_unique<BoundPrimitive>(std::move(primitive));
  k->bind(ctx, from, in, 0).bind(ctx, to, out, BoundPrimitive::kOutput);
  return k;
}

}  // namespace

bool accepts(const vit_node& n, std::string* why) {
  for (int32_t i = 0; i < n.n_inputs; ++i)
    if (n.inputs[i].dtype != VIT_DTYPE_F32 || !vit_plugin::is_contiguous(n.inputs[i])) {
      *why = "onednn takes contiguous f32 tensors";
      return false;
    }
  switch (n.op) {
    case VIT_OP_ATTENTION:
      // q/k norms, rope tables and the score bias are read in place at every run: weights only.
      for (int32_t i = 1; i < n.n_inputs; ++i)
        if (!VIT_INPUT_IS_CONSTANT(&n, i)) {
          *why = "onednn's attention takes its norms, rope tables and score bias as constants";
          return false;
        }
      return true;
    case VIT_OP_BATCH_MATMUL:
      if (n.inputs[0].rank > 2 && n.inputs[0].shape[0] != n.inputs[1].shape[0]) {
        *why = "onednn's batch_matmul takes equal batches";
        return false;
      }
      return true;
    case VIT_OP_LINEAR: case VIT_OP_MLP: case VIT_OP_LAYER_NORM: case VIT_OP_GELU: case VIT_OP_SCALE:
    case VIT_OP_SOFTMAX: case VIT_OP_PATCHIFY: case VIT_OP_ADD: case VIT_OP_MUL: case VIT_OP_REDUCE_MEAN:
    case VIT_OP_REDUCE_MAX: case VIT_OP_GELU_TANH: case VIT_OP_QUICK_GELU: case VIT_OP_SILU: case VIT_OP_SLICE:
    case VIT_OP_CONCAT:
      return true;
    default:
      // Other pure data movement (reshape, permute) runs once per batch at the ends of the
      // graph, or only where attention is lowered: not worth a kernel here.
      *why = std::string("op ") + vit_plugin::op_name(n.op) + " is left to other backends";
      return false;
  }
}

namespace {

// A linear or MLP whose input, quantised to int8 with a calibrated range on the VNNI kernel,
// may come straight from its LayerNorm (MatmulOptions::norm_weight).
bool normalizes_input(const Context& ctx, const vit_node& norm, const vit_node& core) {
  if (ctx.precision != Precision::INT8 || !ctx.vnni_int8) return false;
  if (norm.op != VIT_OP_LAYER_NORM || norm.n_inputs != 3 || !VIT_INPUT_IS_CONSTANT(&norm, 1) ||
      !VIT_INPUT_IS_CONSTANT(&norm, 2))
    return false;
  if (core.op != VIT_OP_LINEAR && core.op != VIT_OP_MLP) return false;
  if (core.input_ids[0] != norm.output_id || core.inputs[1].shape[1] % 4 != 0) return false;
  if (norm.inputs[1].shape[0] != core.inputs[1].shape[1]) return false;
  // Calibrated, and in int8: the linear; or both of the MLP's matmuls (with fc2 kept in float,
  // fc1 takes the GELU or a bf16 output as oneDNN post-ops, off the VNNI kernel).
  return core.ints[0] && !(core.op == VIT_OP_LINEAR ? core.ints[1] : core.ints[1] & 3);
}

}  // namespace

int32_t claim_length(const Context& ctx, const vit_node* nodes, int32_t count) {
  // [LayerNorm ->] linear or MLP [-> add]: the LayerNorm where the matmul quantises its input
  // with a calibrated range on the VNNI kernel (normalised and quantised in one pass, the
  // normalised f32 rows never written); the add where its other input is a residual from
  // outside (the matmul's last post-op, saving a pass over the activations). Nothing after
  // the run may read the values inside it.
  if (count < 2) return 0;
  std::string why;
  int32_t core = 0;
  if (nodes[0].op == VIT_OP_LAYER_NORM) {
    if (!accepts(nodes[0], &why) || !normalizes_input(ctx, nodes[0], nodes[1])) return 0;
    core = 1;
  }
  const vit_node& c = nodes[core];
  if ((c.op != VIT_OP_LINEAR && c.op != VIT_OP_MLP) || !accepts(c, &why) || !vit_plugin::weights_constant(c)) return 0;
  if (core == 1 && vit_plugin::read_from(nodes, count, 0, 2)) return 0;
  const int32_t add = core + 1;
  if (add < count && accepts(nodes[add], &why) && vit_plugin::residual_input(nodes[add], c.output_id) >= 0 &&
      !vit_plugin::read_from(nodes, count, core, add + 1))
    return add + 1;
  return core == 1 ? 2 : 0;
}

std::unique_ptr<Kernel> make_kernel(Context& ctx, const vit_node& n) {
  switch (n.op) {
    case VIT_OP_FUSED: {
      if (n.n_fused < 2 || claim_length(ctx, n.fused, n.n_fused) != n.n_fused)
        throw std::runtime_error("onednn: asked to run a fused step it did not claim");
      const Step s = step_of(n);
      if (s.core->op == VIT_OP_LINEAR) return std::make_unique<LinearKernel>(ctx, s);
      return std::make_unique<MlpKernel>(ctx, s);
    }
    case VIT_OP_LINEAR: return std::make_unique<LinearKernel>(ctx, step_of(n));
    case VIT_OP_MLP: return std::make_unique<MlpKernel>(ctx, step_of(n));
    case VIT_OP_ATTENTION: return std::make_unique<AttentionKernel>(ctx, n);
    case VIT_OP_BATCH_MATMUL: return batch_matmul(ctx, n);
    case VIT_OP_LAYER_NORM: return layer_norm(ctx, n);
    case VIT_OP_ADD: case VIT_OP_MUL: return binary(ctx, n);
    case VIT_OP_SLICE: return std::make_unique<SliceKernel>(ctx, n);
    case VIT_OP_CONCAT: return std::make_unique<ConcatKernel>(n);
    default: return unary(ctx, n);
  }
}

}  // namespace onednn_backend
