// onednn_kernels.hpp: the oneDNN backend's node kernels. Each kernel is built once per node
// (prepare): its primitives, pre-packed weights and scratch; execute only points the
// primitives at the host's buffers and runs them, allocating nothing.
#pragma once

#include "bf16_gemm.hpp"
#include "vit_plugin.h"
#include "vnni_gemm.hpp"

#include <oneapi/dnnl/dnnl.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace onednn_backend {

enum class Precision { F32, BF16, INT8 };

Precision parse_precision(const std::string& name);
const char* precision_name(Precision p);

// Weights packed for one matmul shape, shared by every plan (batch size) that uses them.
struct PackedWeights {
  dnnl::memory weights;              // in the layout the primitive asked for
  std::vector<int32_t> column_sums;  // int8: sum over k of the quantised w[n, k]
  std::unique_ptr<VnniWeights> vnni;  // int8 on vitbatch's own kernel: w in its panels instead
  std::unique_ptr<Bf16Weights> bf16;  // bf16 on vitbatch's own kernel: likewise
};

// Who packed a matmul's weights: oneDNN (in the layout its primitive asked for) or one of
// vitbatch's own kernels (in their panels).
enum class Packer { ONEDNN, VNNI, BF16 };

// (weight pointer, packed layout) -> packed weights, while some kernel holds them: plans for
// other batch sizes and other contexts (lanes running images side by side) share them, and an
// entry dies with its last kernel, so a pointer the host reuses for other weights later never
// finds stale ones. One per process, under its mutex: lanes prepare at the same time.
struct PackCache {
  std::mutex mutex;
  struct Key {
    const void* weights;
    Packer packer;
    dnnl::memory::desc layout;  // oneDNN's; empty for the own kernels
  };
  std::vector<std::pair<Key, std::weak_ptr<PackedWeights>>> entries;
};
PackCache& pack_cache();

// The CPU engine every context shares, so that weights one context packed are memory of the
// engine the others' primitives run on.
const dnnl::engine& cpu_engine();

struct Context {
  int threads = 1;
  Precision precision = Precision::F32;
  // What an int8 run uses for the matmuls calibration keeps out of int8: bf16 where its
  // matmuls outrun fp32 (AMD's AVX512_BF16, Intel's AMX), else fp32.
  Precision float_fallback = Precision::F32;
  // int8 matmuls on vitbatch's own AVX512_VNNI kernel (vnni_gemm.hpp) rather than oneDNN's
  // (backend option int8_gemm).
  bool vnni_int8 = false;
  // bf16 matmuls on vitbatch's own AVX512_BF16 kernel (bf16_gemm.hpp) rather than oneDNN's
  // (backend option bf16_gemm).
  bool bf16_own = false;
  dnnl::engine engine = cpu_engine();
  dnnl::stream stream{engine};
  std::string description;
  // Scratch shared by all kernels (they run one at a time): MLP hidden activations,
  // each thread's attention work, bf16/int8 copies of matmul inputs. Sized at prepare, never at run.
  std::vector<float> scratch;
  float* reserve_scratch(size_t floats) {
    if (scratch.size() < floats) scratch.resize(floats);
    return scratch.data();
  }
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual void run(Context& ctx, const vit_node& node) = 0;
};

// Throws std::runtime_error (with the reason) for a node it cannot build.
std::unique_ptr<Kernel> make_kernel(Context& ctx, const vit_node& node);

// Whether make_kernel handles this node (ops, dtypes, layouts); the reason when not.
bool accepts(const vit_node& node, std::string* why);

// How many of nodes[0..count) make_kernel runs as one fused step in this context (0: none).
int32_t claim_length(const Context& ctx, const vit_node* nodes, int32_t count);

}  // namespace onednn_backend
