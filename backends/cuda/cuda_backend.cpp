// The CUDA backend: the whole graph on one NVIDIA GPU. Activations live in device memory
// (ABI 2: this backend allocates them and the host moves data only with copy()); weights are
// uploaded once, at prepare, in the precision's type. GEMMs run on cuBLASLt with the bias
// fused as its epilogue; attention in one fused kernel (cuda_attention.cu) at bf16/fp16 with
// head size 64, else as two batched cuBLAS products around a softmax; everything else in the
// kernels of cuda_kernels.cu. Precisions: fp32 (TF32 only with the option tf32=true), bf16
// and fp16 (GEMM inputs in that type, float32 accumulation, float32 between nodes). The
// host's runs of nodes are recorded as CUDA graphs from their second run on (graphs=false:
// never). With two batches in flight (mark/wait_mark), the next batch's upload runs on a
// second stream while this one's model runs.
#include "cuda_attention.cuh"
#include "cuda_gemm.hpp"
#include "cuda_kernels.cuh"
#include "vit_plugin_helpers.hpp"

#include <cuda_runtime.h>
#include <dlfcn.h>

#include <map>
#include <tuple>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace cuda_backend;

const int32_t kOps[] = {VIT_OP_PATCHIFY, VIT_OP_LINEAR,  VIT_OP_BATCH_MATMUL, VIT_OP_ADD,     VIT_OP_LAYER_NORM,
                        VIT_OP_GELU,     VIT_OP_SOFTMAX, VIT_OP_CONCAT,       VIT_OP_SLICE,   VIT_OP_RESHAPE,
                        VIT_OP_PERMUTE,  VIT_OP_SCALE,   VIT_OP_ATTENTION,    VIT_OP_MLP};

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// Why no GPU can be used, or "" when one can.
std::string no_device_reason() {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (e == cudaErrorNoDevice) return "no CUDA device";
    if (e == cudaErrorInsufficientDriver) {
      void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
      if (!driver) return "no CUDA device (no NVIDIA driver: libcuda.so.1 is not installed)";
      dlclose(driver);
      return "no CUDA device usable (the NVIDIA driver is older than the CUDA " + std::to_string(CUDART_VERSION / 1000) +
             " runtime this plugin was built with)";
    }
    return std::string("no CUDA device (") + cudaGetErrorString(e) + ")";
  }
  if (count == 0) return "no CUDA device";
  return "";
}

struct Context {
  int device = 0;
  cudaStream_t stream = nullptr;
  Gemm gemm;
  Elem elem = Elem::F32;
  std::string precision;
  // One scratch area for the composites' intermediates, shared by every node (they run one
  // at a time on one stream). It only grows, at prepare, so execute allocates nothing.
  void* scratch = nullptr;
  size_t scratch_bytes = 0;
  // Constants uploaded once and shared by the nodes (of every plan) that read them, by host
  // address, size and element type; freed when the last node holding one is released (so
  // a host that frees a weight and reuses its address gets a fresh upload).
  struct Upload {
    void* device = nullptr;
    int users = 0;
  };
  using UploadKey = std::tuple<const void*, int64_t, int>;
  std::map<UploadKey, Upload> constants;
  std::string description;
  // CUDA graphs of the runs of nodes the host brackets (sequence_begin), by key: a batch's
  // ~160 launches become one, which is what one image at a time is bound by. A graph holds
  // the addresses of the buffers and the scratch: the host forgets a key before freeing its
  // buffers, and need_scratch() drops every graph when the scratch moves.
  struct Recording {
    int runs = 0;
    bool failed = false;  // a capture failed: run it unrecorded from now on
    cudaGraphExec_t exec = nullptr;
  };
  std::map<uint64_t, Recording> recordings;
  bool graphs = true;      // option graphs=false: every run unrecorded
  bool capturing = false;  // between a sequence_begin that began a capture and its end
  // Queued uploads (VIT_COPY_HOST_TO_DEVICE_QUEUED), with two batches in flight: the pixels
  // cross PCIe on a second stream into `landing` while the model runs on `stream`; then one
  // device-to-device copy on `stream`, in order, puts them where the model reads them (that
  // buffer is still being read by the batch before). `uploaded`: the last upload is in
  // landing; `landed`: landing's last copy-out is done, so it can take the next.
  cudaStream_t upload_stream = nullptr;
  void* landing = nullptr;
  size_t landing_bytes = 0;
  cudaEvent_t uploaded = nullptr, landed = nullptr;
  // mark(): events recorded on `stream`, in turn (the host keeps at most 4 unwaited).
  static constexpr uint64_t kMarks = 8;
  cudaEvent_t marks[kMarks] = {};
  uint64_t next_mark = 0;

  ~Context() {
    if (stream) cudaStreamSynchronize(stream);
    if (upload_stream) cudaStreamSynchronize(upload_stream);
    for (auto& [key, r] : recordings)
      if (r.exec) cudaGraphExecDestroy(r.exec);
    for (cudaEvent_t e : marks)
      if (e) cudaEventDestroy(e);
    if (uploaded) cudaEventDestroy(uploaded);
    if (landed) cudaEventDestroy(landed);
    if (landing) cudaFree(landing);
    if (upload_stream) cudaStreamDestroy(upload_stream);
    for (auto& [key, u] : constants) cudaFree(u.device);
    if (scratch) cudaFree(scratch);
    gemm.destroy();
    if (stream) cudaStreamDestroy(stream);
  }

  void need_scratch(size_t bytes) {
    if (bytes <= scratch_bytes) return;
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    for (auto& [key, r] : recordings)  // they use the old scratch: record them again
      if (r.exec) {
        cudaGraphExecDestroy(r.exec);
        r.exec = nullptr;
      }
    if (scratch) check(cudaFree(scratch), "cudaFree");
    scratch = nullptr;
    scratch_bytes = 0;
    check(cudaMalloc(&scratch, bytes), ("cudaMalloc of " + std::to_string(bytes >> 20) + " MiB scratch").c_str());
    scratch_bytes = bytes;
  }

  // The device copy of a constant input, converted to `e`; one more user of it, who gives it
  // back with drop(key).
  void* upload(const vit_tensor& t, Elem e, std::vector<UploadKey>& held) {
    int64_t n = vit_plugin::element_count(t);
    UploadKey key{t.data, n, static_cast<int>(e)};
    held.push_back(key);
    auto found = constants.find(key);
    if (found != constants.end()) {
      ++found->second.users;
      return found->second.device;
    }
    void* staging = nullptr;
    void* out = nullptr;
    check(cudaMalloc(&out, static_cast<size_t>(n) * elem_size(e)), "cudaMalloc (weights)");
    if (e == Elem::F32) {
      check(cudaMemcpyAsync(out, t.data, static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice, stream), "upload");
    } else {
      check(cudaMalloc(&staging, static_cast<size_t>(n) * 4), "cudaMalloc (staging)");
      check(cudaMemcpyAsync(staging, t.data, static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice, stream), "upload");
      convert(static_cast<const float*>(staging), out, n, e, stream);
      check(cudaStreamSynchronize(stream), "upload");
      cudaFree(staging);
    }
    constants[key] = Upload{out, 1};
    return out;
  }

  void drop(const UploadKey& key) {
    auto found = constants.find(key);
    if (found == constants.end() || --found->second.users > 0) return;
    cudaStreamSynchronize(stream);  // no queued kernel may still read it
    cudaFree(found->second.device);
    constants.erase(found);
  }
};

// What prepare() settles for a node: device addresses of its constants, GEMM plans.
struct State {
  std::vector<const void*> constant;  // per input: device copy, or null for activations
  std::vector<Context::UploadKey> held;  // the uploads this node uses
  std::unique_ptr<GemmPlan> g1, g2;   // linear: g1; mlp: fc1, fc2
  // A fused run (VIT_OP_FUSED): which pattern, and each node's own state.
  int fusion = 0;
  std::vector<std::unique_ptr<State>> parts;
};

// The runs this backend claims, each saving a round trip of the activations through memory:
enum Fusion {
  kNone = 0,
  kNormLinear = 1,     // layer_norm -> linear: the norm writes the GEMM's input type directly
  kLinearAdd = 2,      // linear -> add (residual): the GEMM adds the residual in its epilogue
  kNormMlpAdd = 3,     // layer_norm -> mlp -> add: both of the above around the MLP
  kAttentionBlock = 4, // layer_norm -> linear (qkv) -> attention -> linear (proj) -> add, at
                       // bf16/fp16 with head size 64: qkv and the heads' output stay in that
                       // type, and no float32 copy of either is written
};

using vit_plugin::read_from;
using vit_plugin::residual_input;
using vit_plugin::weights_constant;

Fusion fusion_at(const vit_node* n, int32_t count, Elem e) {
  if (count >= 5 && n[0].op == VIT_OP_LAYER_NORM && n[1].op == VIT_OP_LINEAR && n[1].n_inputs == 3 &&
      n[1].input_ids[0] == n[0].output_id && weights_constant(n[1]) && n[2].op == VIT_OP_ATTENTION &&
      n[2].n_inputs == 1 && n[2].input_ids[0] == n[1].output_id && n[2].ints[0] > 0 &&
      fused_attention_fits(n[2].inputs[0].shape[2] / 3 / n[2].ints[0], e) && n[3].op == VIT_OP_LINEAR &&
      n[3].n_inputs == 3 && n[3].input_ids[0] == n[2].output_id && weights_constant(n[3])) {
    // The add's other input (the residual) must come from before the block, and nothing
    // after the block may read the norm's, qkv's or the heads' output.
    int r = residual_input(n[4], n[3].output_id, n[0].output_id);
    bool residual_outside = r >= 0 && n[4].input_ids[r] != n[1].output_id && n[4].input_ids[r] != n[2].output_id;
    bool inner_private = !read_from(n, count, 0, 2) && !read_from(n, count, 1, 3) && !read_from(n, count, 2, 4);
    if (residual_outside && inner_private) return kAttentionBlock;
  }
  if (count >= 3 && n[0].op == VIT_OP_LAYER_NORM && n[1].op == VIT_OP_MLP && n[1].input_ids[0] == n[0].output_id &&
      weights_constant(n[1]) && residual_input(n[2], n[1].output_id, n[0].output_id) >= 0)
    return kNormMlpAdd;
  if (count >= 2 && n[0].op == VIT_OP_LAYER_NORM && n[1].op == VIT_OP_LINEAR && n[1].input_ids[0] == n[0].output_id &&
      weights_constant(n[1]))
    return kNormLinear;
  if (count >= 2 && n[0].op == VIT_OP_LINEAR && weights_constant(n[0]) && residual_input(n[1], n[0].output_id) >= 0)
    return kLinearAdd;
  return kNone;
}

int fusion_length(Fusion f) { return f == kAttentionBlock ? 5 : f == kNormMlpAdd ? 3 : f == kNone ? 0 : 2; }

const void* in(const State& st, const vit_node& n, int i) {
  return st.constant[i] ? st.constant[i] : n.inputs[i].data;
}
const float* inf(const State& st, const vit_node& n, int i) { return static_cast<const float*>(in(st, n, i)); }
float* outf(const vit_node& n) { return static_cast<float*>(n.outputs[0].data); }

int64_t last_dim(const vit_tensor& t) { return t.shape[t.rank - 1]; }

// Scratch parts start on 256-byte boundaries: cuBLAS's tensor-core kernels want aligned
// operands (an unaligned bf16 operand made it refuse a product outright).
size_t aligned(size_t bytes) { return (bytes + 255) / 256 * 256; }

vit_status create(const vit_backend_config* config, void** context, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    std::string why = no_device_reason();
    if (!why.empty()) throw std::runtime_error(why);
    std::string unknown = vit_plugin::unknown_options(*config, {"device", "tf32", "graphs"});
    if (!unknown.empty()) throw std::runtime_error("cuda: unknown option(s): " + unknown + " (known: device, tf32, graphs)");
    auto ctx = std::make_unique<Context>();
    ctx->precision = config->precision ? config->precision : "fp32";
    if (ctx->precision == "bf16") ctx->elem = Elem::BF16;
    else if (ctx->precision == "fp16") ctx->elem = Elem::F16;
    else if (ctx->precision != "fp32")
      throw std::runtime_error("cuda: precision '" + ctx->precision + "' is not supported (fp32, bf16, fp16)");
    std::string tf32 = vit_plugin::option(*config, "tf32", "false");
    if (tf32 != "true" && tf32 != "false") throw std::runtime_error("cuda: option tf32 must be true or false, not '" + tf32 + "'");
    if (tf32 == "true" && ctx->elem != Elem::F32) throw std::runtime_error("cuda: option tf32 applies to precision fp32 only");
    std::string graphs = vit_plugin::option(*config, "graphs", "true");
    if (graphs != "true" && graphs != "false") throw std::runtime_error("cuda: option graphs must be true or false, not '" + graphs + "'");
    ctx->graphs = graphs == "true";
    std::string device = vit_plugin::option(*config, "device", "0");
    int count = 0;
    check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    try {
      ctx->device = std::stoi(device);
    } catch (const std::exception&) {
      ctx->device = -1;
    }
    if (ctx->device < 0 || ctx->device >= count)
      throw std::runtime_error("cuda: option device '" + device + "' is not one of the " + std::to_string(count) + " device(s)");
    check(cudaSetDevice(ctx->device), "cudaSetDevice");
    check(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cudaStreamCreateWithFlags(&ctx->upload_stream, cudaStreamNonBlocking), "cudaStreamCreate");
    for (cudaEvent_t* e : {&ctx->uploaded, &ctx->landed}) check(cudaEventCreateWithFlags(e, cudaEventDisableTiming), "cudaEventCreate");
    for (cudaEvent_t& e : ctx->marks) check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
    ctx->gemm.init(ctx->stream, tf32 == "true");
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, ctx->device), "cudaGetDeviceProperties");
    int runtime = 0, driver = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    ctx->description = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
                       std::to_string(prop.totalGlobalMem >> 30) + " GiB), CUDA runtime " + std::to_string(runtime / 1000) +
                       "." + std::to_string((runtime % 1000) / 10) + ", driver " + std::to_string(driver / 1000) + "." +
                       std::to_string((driver % 1000) / 10) + ", cuBLASLt, " + ctx->precision +
                       (tf32 == "true" ? " (TF32 matmuls)" : "") + (ctx->graphs ? ", CUDA graphs" : "");
    *context = ctx.release();
    return VIT_STATUS_OK;
  });
}

void destroy(void* context) { delete static_cast<Context*>(context); }

const char* describe(void* context) { return static_cast<Context*>(context)->description.c_str(); }

vit_status supports(void*, const vit_node* node, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    for (int32_t i = 0; i < node->n_inputs; ++i)
      if (node->inputs[i].dtype != VIT_DTYPE_F32 || !vit_plugin::is_contiguous(node->inputs[i])) {
        vit_plugin::write_message(message, size, "cuda takes contiguous f32 tensors only");
        return VIT_STATUS_UNSUPPORTED;
      }
    // Weights are uploaded once, in the compute type: they must be constants.
    if ((node->op == VIT_OP_LINEAR || node->op == VIT_OP_MLP) && !weights_constant(*node)) {
      vit_plugin::write_message(message, size, "cuda runs linear and mlp with constant weights only");
      return VIT_STATUS_UNSUPPORTED;
    }
    if (node->op == VIT_OP_ATTENTION && node->n_inputs != 1) {
      vit_plugin::write_message(message, size, "cuda's attention has no q/k norm");
      return VIT_STATUS_UNSUPPORTED;
    }
    if (node->op == VIT_OP_BATCH_MATMUL && node->inputs[0].shape[0] != node->inputs[1].shape[0]) {
      vit_plugin::write_message(message, size, "cuda's batch_matmul takes equal batches");
      return VIT_STATUS_UNSUPPORTED;
    }
    if (node->op == VIT_OP_PERMUTE && node->ints[0] > 8) {
      vit_plugin::write_message(message, size, "permute of rank above 8");
      return VIT_STATUS_UNSUPPORTED;
    }
    return VIT_STATUS_OK;
  });
}

std::unique_ptr<State> prepare_single(Context* ctx, const vit_node* node) {
  auto st = std::make_unique<State>();
  st->constant.assign(node->n_inputs, nullptr);
  const Elem e = ctx->elem;
  // Weights of the GEMMs go up in the compute type, everything else as float32.
  auto is_gemm_weight = [&](int i) {
    return (node->op == VIT_OP_LINEAR && i == 1) || (node->op == VIT_OP_MLP && (i == 1 || i == 3));
  };
  for (int32_t i = 0; i < node->n_inputs; ++i)
    if (VIT_INPUT_IS_CONSTANT(node, i)) st->constant[i] = ctx->upload(node->inputs[i], is_gemm_weight(i) ? e : Elem::F32, st->held);
  const vit_tensor& x = node->inputs[0];
  if (node->op == VIT_OP_LINEAR) {
    if (!st->constant[1]) throw std::runtime_error("cuda: a linear's weight must be a constant");
    int64_t k = last_dim(x), n = node->inputs[1].shape[0], m = vit_plugin::element_count(x) / k;
    const void* bias = node->n_inputs > 2 ? st->constant[2] : nullptr;
    if (node->n_inputs > 2 && !bias) throw std::runtime_error("cuda: a linear's bias must be a constant");
    st->g1 = ctx->gemm.plan(m, n, k, e, e, Elem::F32, bias);
    ctx->need_scratch(e == Elem::F32 ? 0 : static_cast<size_t>(m * k) * elem_size(e));
  } else if (node->op == VIT_OP_MLP) {
    for (int i = 1; i <= 4; ++i)
      if (!st->constant[i]) throw std::runtime_error("cuda: an mlp's weights must be constants");
    int64_t d = last_dim(x), hidden = node->inputs[1].shape[0], m = vit_plugin::element_count(x) / d;
    // fc1 writes the hidden layer in the compute type, with its bias in that type too.
    const void* b1 = e == Elem::F32 ? st->constant[2] : ctx->upload(node->inputs[2], e, st->held);
    st->g1 = ctx->gemm.plan(m, hidden, d, e, e, e, b1);
    st->g2 = ctx->gemm.plan(m, d, hidden, e, e, Elem::F32, st->constant[4]);
    size_t xs = e == Elem::F32 ? 0 : aligned(static_cast<size_t>(m * d) * elem_size(e));
    ctx->need_scratch(xs + static_cast<size_t>(m * hidden) * elem_size(e));
  } else if (node->op == VIT_OP_ATTENTION) {
    int64_t b = x.shape[0], t = x.shape[1], dim = x.shape[2] / 3, h = node->ints[0];
    if (h <= 0 || dim % h != 0) throw std::runtime_error("cuda: attention heads do not divide the width");
    int64_t hd = dim / h;
    if (fused_attention_fits(hd, e)) return st;  // no scratch: the scores stay on chip
    size_t qkv = 3 * static_cast<size_t>(b * t * dim) * elem_size(e);
    size_t scores = static_cast<size_t>(b * h * t * t);
    ctx->need_scratch(aligned(qkv) + aligned(scores * 4) + aligned(scores * elem_size(e)) +
                      static_cast<size_t>(b * h * t * hd) * 4);
  }
  return st;
}

void execute_single(Context* ctx, const State& st, const vit_node& n) {
  cudaStream_t s = ctx->stream;
  const Elem e = ctx->elem;
  const vit_tensor& x = n.inputs[0];
  const vit_tensor& y = n.outputs[0];
  const int64_t count = vit_plugin::element_count(y);
  auto* scratch = static_cast<char*>(ctx->scratch);
  switch (n.op) {
    case VIT_OP_PATCHIFY:
      patchify(inf(st, n, 0), outf(n), x.shape[0], x.shape[1], x.shape[2], x.shape[3], n.ints[0], s);
      break;
    case VIT_OP_LINEAR: {
      const void* a = in(st, n, 0);
      if (e != Elem::F32) {
        convert(inf(st, n, 0), scratch, vit_plugin::element_count(x), e, s);
        a = scratch;
      }
      ctx->gemm.run(*st.g1, st.constant[1], a, outf(n));
      break;
    }
    case VIT_OP_MLP: {
      const int64_t d = last_dim(x), m = vit_plugin::element_count(x) / d, hidden = n.inputs[1].shape[0];
      const void* a = in(st, n, 0);
      char* h = scratch;
      if (e != Elem::F32) {
        convert(inf(st, n, 0), scratch, m * d, e, s);
        a = scratch;
        h = scratch + aligned(static_cast<size_t>(m * d) * elem_size(e));
      }
      ctx->gemm.run(*st.g1, st.constant[1], a, h);
      gelu(h, m * hidden, e, s);
      ctx->gemm.run(*st.g2, st.constant[3], h, outf(n));
      break;
    }
    case VIT_OP_ATTENTION: {
      const int64_t b = x.shape[0], t = x.shape[1], dim = x.shape[2] / 3, heads = n.ints[0], hd = dim / heads;
      if (fused_attention_fits(hd, e)) {  // scores stay on chip
        fused_attention(inf(st, n, 0), outf(n), b, t, heads, n.floats[0], e, s);
        break;
      }
      const size_t es = elem_size(e), part = static_cast<size_t>(b * t * dim) * es;
      const size_t scores = static_cast<size_t>(b * heads * t * t);
      char* qkv = scratch;
      auto* sc = reinterpret_cast<float*>(qkv + aligned(3 * part));
      char* probs = reinterpret_cast<char*>(sc) + aligned(scores * 4);
      auto* o = reinterpret_cast<float*>(probs + aligned(scores * es));
      split_heads(inf(st, n, 0), qkv, b, t, heads, hd, e, s);
      ctx->gemm.attention_scores(qkv, qkv + part, sc, b * heads, t, hd, e, n.floats[0]);
      softmax(sc, probs, b * heads * t, t, e, s);
      ctx->gemm.attention_values(probs, qkv + 2 * part, o, b * heads, t, hd, e);
      merge_heads(o, outf(n), b, t, heads, hd, s);
      break;
    }
    case VIT_OP_BATCH_MATMUL: {
      const vit_tensor& bt = n.inputs[1];
      int64_t m = x.shape[x.rank - 2], k = x.shape[x.rank - 1];
      int64_t nn = n.ints[0] ? bt.shape[bt.rank - 2] : bt.shape[bt.rank - 1];
      int64_t batch = vit_plugin::element_count(x) / (m * k);
      ctx->gemm.batched_f32(inf(st, n, 0), inf(st, n, 1), outf(n), batch, m, nn, k, n.ints[0] != 0);
      break;
    }
    case VIT_OP_ADD:
      add(inf(st, n, 0), inf(st, n, 1), outf(n), count, vit_plugin::element_count(n.inputs[1]), s);
      break;
    case VIT_OP_LAYER_NORM:
      layer_norm(inf(st, n, 0), inf(st, n, 1), inf(st, n, 2), outf(n), count / last_dim(x), last_dim(x), n.floats[0], Elem::F32, s);
      break;
    case VIT_OP_GELU:
      gelu_f32(inf(st, n, 0), outf(n), count, s);
      break;
    case VIT_OP_SOFTMAX:
      softmax(inf(st, n, 0), outf(n), count / last_dim(x), last_dim(x), Elem::F32, s);
      break;
    case VIT_OP_SCALE:
      scale(inf(st, n, 0), outf(n), count, n.floats[0], s);
      break;
    case VIT_OP_RESHAPE:
      if (n.outputs[0].data != in(st, n, 0))
        check(cudaMemcpyAsync(outf(n), in(st, n, 0), static_cast<size_t>(count) * 4, cudaMemcpyDeviceToDevice, s),
              "reshape");
      break;
    case VIT_OP_PERMUTE: {
      int64_t perm[8];
      for (int i = 0; i < x.rank; ++i) perm[i] = n.ints[1 + i];
      permute(inf(st, n, 0), outf(n), x.rank, x.shape, perm, s);
      break;
    }
    case VIT_OP_SLICE: {
      const int64_t axis = n.ints[0], start = n.ints[1], end = n.ints[2];
      int64_t outer = 1, inner = 1;
      for (int64_t i = 0; i < axis; ++i) outer *= x.shape[i];
      for (int64_t i = axis + 1; i < x.rank; ++i) inner *= x.shape[i];
      copy_rows(inf(st, n, 0), outf(n), outer, outer, x.shape[axis], start, end - start, end - start, 0, inner, s);
      break;
    }
    case VIT_OP_CONCAT: {
      const int64_t axis = n.ints[0];
      int64_t outer = 1, inner = 1;
      for (int64_t i = 0; i < axis; ++i) outer *= y.shape[i];
      for (int64_t i = axis + 1; i < y.rank; ++i) inner *= y.shape[i];
      int64_t offset = 0;
      for (int32_t k = 0; k < n.n_inputs; ++k) {
        const vit_tensor& part = n.inputs[k];
        // An input with first dim 1 joined to a batch repeats for every image.
        int64_t mod = part.shape[0] == y.shape[0] ? outer : outer / y.shape[0];
        copy_rows(inf(st, n, k), outf(n), outer, mod, part.shape[axis], 0, part.shape[axis], y.shape[axis], offset, inner, s);
        offset += part.shape[axis];
      }
      break;
    }
    default:
      throw std::runtime_error(std::string("cuda: op ") + vit_plugin::op_name(n.op) + " is not implemented");
  }
}

// The fused runs' scratch: the normalised input in the GEMM's type (float32 at fp32), then
// what the single nodes need after it.
size_t norm_bytes(const Context& ctx, const vit_node& norm) {
  return aligned(static_cast<size_t>(vit_plugin::element_count(norm.inputs[0])) * elem_size(ctx.elem));
}

std::unique_ptr<State> prepare_fused(Context* ctx, const vit_node* node) {
  auto st = std::make_unique<State>();
  st->fusion = fusion_at(node->fused, node->n_fused, ctx->elem);
  if (st->fusion == kNone || fusion_length(static_cast<Fusion>(st->fusion)) != node->n_fused)
    throw std::runtime_error("cuda: asked to run a fused step it did not claim");
  for (int32_t i = 0; i < node->n_fused; ++i) st->parts.push_back(prepare_single(ctx, &node->fused[i]));
  const vit_node* f = node->fused;
  if (st->fusion == kNormLinear) ctx->need_scratch(norm_bytes(*ctx, f[0]));
  if (st->fusion == kAttentionBlock) {
    const int64_t d = last_dim(f[0].inputs[0]), m = vit_plugin::element_count(f[0].inputs[0]) / d;
    const size_t es = elem_size(ctx->elem);
    // qkv written in the compute type, with its bias in that type.
    st->g1 = ctx->gemm.plan(m, 3 * d, d, ctx->elem, ctx->elem, ctx->elem, ctx->upload(f[1].inputs[2], ctx->elem, st->held));
    ctx->need_scratch(aligned(static_cast<size_t>(m * 3 * d) * es) + aligned(static_cast<size_t>(m * d) * es));
  }
  if (st->fusion == kNormMlpAdd) {
    const int64_t d = last_dim(f[1].inputs[0]), m = vit_plugin::element_count(f[1].inputs[0]) / d;
    ctx->need_scratch(norm_bytes(*ctx, f[0]) + static_cast<size_t>(m * f[1].inputs[1].shape[0]) * elem_size(ctx->elem));
  }
  return st;
}

void execute_fused(Context* ctx, const State& st, const vit_node& node) {
  const vit_node* f = node.fused;
  cudaStream_t s = ctx->stream;
  const Elem e = ctx->elem;
  char* scratch = static_cast<char*>(ctx->scratch);
  auto norm = [&](const vit_node& n, const State& ns, void* to) {
    const vit_tensor& x = n.inputs[0];
    int64_t d = last_dim(x), rows = vit_plugin::element_count(x) / d;
    layer_norm(inf(ns, n, 0), inf(ns, n, 1), inf(ns, n, 2), to, rows, d, n.floats[0], e, s);
    // Read after the run as well (the host gave it a buffer): write it there too.
    if (n.outputs[0].data)
      layer_norm(inf(ns, n, 0), inf(ns, n, 1), inf(ns, n, 2), n.outputs[0].data, rows, d, n.floats[0], Elem::F32, s);
  };
  if (st.fusion == kNormLinear) {
    const vit_node& lin = f[1];
    norm(f[0], *st.parts[0], scratch);
    ctx->gemm.run(*st.parts[1]->g1, st.parts[1]->constant[1], scratch, outf(lin));
    return;
  }
  if (st.fusion == kLinearAdd) {
    const vit_node& lin = f[0];
    const vit_node& add = f[1];
    const State& ls = *st.parts[0];
    if (lin.outputs[0].data) {  // the projection is read elsewhere too: no fusion to gain
      execute_single(ctx, ls, lin);
      execute_single(ctx, *st.parts[1], add);
      return;
    }
    const void* a = in(ls, lin, 0);
    if (e != Elem::F32) {
      convert(inf(ls, lin, 0), scratch, vit_plugin::element_count(lin.inputs[0]), e, s);
      a = scratch;
    }
    int r = residual_input(add, lin.output_id);
    ctx->gemm.run(*ls.g1, ls.constant[1], a, outf(add), in(*st.parts[1], add, r));
    return;
  }
  if (st.fusion == kAttentionBlock) {
    if (f[1].outputs[0].data || f[2].outputs[0].data || f[3].outputs[0].data)
      throw std::runtime_error("cuda: a fused attention block's inner values are read elsewhere");
    const vit_node& attn = f[2];
    const vit_node& add = f[4];
    const int64_t b = attn.inputs[0].shape[0], t = attn.inputs[0].shape[1], d = attn.inputs[0].shape[2] / 3;
    char* qkv = scratch;
    // The normed input, then (once qkv is made) the heads' output.
    char* rows = scratch + aligned(static_cast<size_t>(b * t * 3 * d) * elem_size(e));
    norm(f[0], *st.parts[0], rows);
    ctx->gemm.run(*st.g1, st.parts[1]->constant[1], rows, qkv);
    fused_attention_same_type(qkv, rows, b, t, attn.ints[0], attn.floats[0], e, s);
    int r = residual_input(add, f[3].output_id, f[0].output_id);
    ctx->gemm.run(*st.parts[3]->g1, st.parts[3]->constant[1], rows, outf(add), in(*st.parts[4], add, r));
    return;
  }
  // kNormMlpAdd
  const vit_node& mlp = f[1];
  const vit_node& add = f[2];
  const State& ms = *st.parts[1];
  const int64_t d = last_dim(mlp.inputs[0]), m = vit_plugin::element_count(mlp.inputs[0]) / d,
                hidden = mlp.inputs[1].shape[0];
  char* h = scratch + norm_bytes(*ctx, f[0]);
  norm(f[0], *st.parts[0], scratch);
  ctx->gemm.run(*ms.g1, ms.constant[1], scratch, h);
  gelu(h, m * hidden, e, s);
  int r = residual_input(add, mlp.output_id, f[0].output_id);
  if (mlp.outputs[0].data) {  // the MLP's output is read elsewhere too
    ctx->gemm.run(*ms.g2, ms.constant[3], h, outf(mlp));
    execute_single(ctx, *st.parts[2], add);
    return;
  }
  ctx->gemm.run(*ms.g2, ms.constant[3], h, outf(add), in(*st.parts[2], add, r));
}

vit_status prepare(void* context, const vit_node* node, void** state, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto* ctx = static_cast<Context*>(context);
    check(cudaSetDevice(ctx->device), "cudaSetDevice");
    *state = (node->op == VIT_OP_FUSED ? prepare_fused(ctx, node) : prepare_single(ctx, node)).release();
    return VIT_STATUS_OK;
  });
}

vit_status execute(void* context, void* state, const vit_node* node, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto* ctx = static_cast<Context*>(context);
    check(cudaSetDevice(ctx->device), "cudaSetDevice");  // the calling thread may be new
    const State& st = *static_cast<State*>(state);
    try {
      if (node->op == VIT_OP_FUSED) execute_fused(ctx, st, *node);
      else execute_single(ctx, st, *node);
    } catch (...) {
      if (ctx->capturing) {  // the host makes no sequence_end after a failure: end it here
        ctx->capturing = false;
        cudaGraph_t graph = nullptr;
        cudaStreamEndCapture(ctx->stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();
      }
      throw;
    }
    return VIT_STATUS_OK;
  });
}

vit_status sequence_begin(void* context, uint64_t key, int32_t* replayed, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto* ctx = static_cast<Context*>(context);
    *replayed = 0;
    if (!ctx->graphs) return VIT_STATUS_OK;
    check(cudaSetDevice(ctx->device), "cudaSetDevice");
    Context::Recording& r = ctx->recordings[key];
    if (r.exec) {
      check(cudaGraphLaunch(r.exec, ctx->stream), "cudaGraphLaunch");
      *replayed = 1;
      return VIT_STATUS_OK;
    }
    // The first run goes straight to the GPU: it loads the kernels' modules (on first launch)
    // and lets cuBLASLt settle, neither of which belongs in a capture.
    if (r.failed || r.runs++ == 0) return VIT_STATUS_OK;
    // Thread-local: the host's other threads (decoders) may call CUDA meanwhile.
    check(cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    ctx->capturing = true;
    return VIT_STATUS_OK;
  });
}

vit_status sequence_end(void* context, uint64_t key, int32_t* rerun, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto* ctx = static_cast<Context*>(context);
    *rerun = 0;
    if (!ctx->capturing) return VIT_STATUS_OK;
    ctx->capturing = false;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    cudaError_t e = cudaStreamEndCapture(ctx->stream, &graph);
    if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    Context::Recording& r = ctx->recordings[key];
    if (e != cudaSuccess) {  // nothing of the run was done: the host runs it again, unrecorded
      cudaGetLastError();
      r.failed = true;
      *rerun = 1;
      if (vit_plugin::host())
        vit_plugin::host()->log(1, (std::string("cuda: a CUDA graph could not be recorded (") + cudaGetErrorString(e) +
                                    "); that run of nodes goes unrecorded").c_str());
      return VIT_STATUS_OK;
    }
    r.exec = exec;
    check(cudaGraphLaunch(exec, ctx->stream), "cudaGraphLaunch");
    return VIT_STATUS_OK;
  });
}

void sequence_forget(void* context, uint64_t key) {
  auto* ctx = static_cast<Context*>(context);
  auto found = ctx->recordings.find(key);
  if (found == ctx->recordings.end()) return;
  if (found->second.exec) {
    cudaStreamSynchronize(ctx->stream);  // a launch of it may still be running
    cudaGraphExecDestroy(found->second.exec);
  }
  ctx->recordings.erase(found);
}

vit_status claim(void* context, const vit_node* nodes, int32_t count, int32_t* length, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    *length = fusion_length(fusion_at(nodes, count, static_cast<Context*>(context)->elem));
    return VIT_STATUS_OK;
  });
}

void release_state(Context* ctx, State* st) {
  for (auto& part : st->parts) release_state(ctx, part.release());
  for (const auto& key : st->held) ctx->drop(key);
  delete st;
}

void release(void* context, void* state) { release_state(static_cast<Context*>(context), static_cast<State*>(state)); }

int32_t score(char* message, size_t size) {
  std::string why = no_device_reason();
  if (why.empty()) return 100;  // a GPU is far faster than any CPU backend here
  vit_plugin::write_message(message, size, why);
  return 0;
}

vit_status alloc(void* context, size_t bytes, int32_t kind, void** data, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto* ctx = static_cast<Context*>(context);
    check(cudaSetDevice(ctx->device), "cudaSetDevice");
    if (kind == VIT_ALLOC_HOST_STAGING) check(cudaMallocHost(data, bytes), "cudaMallocHost");
    else check(cudaMalloc(data, bytes ? bytes : 1), ("cudaMalloc of " + std::to_string(bytes) + " bytes").c_str());
    return VIT_STATUS_OK;
  });
}

void free_buffer(void* context, void* data, int32_t kind) {
  auto* ctx = static_cast<Context*>(context);
  cudaStreamSynchronize(ctx->stream);
  cudaStreamSynchronize(ctx->upload_stream);  // a queued upload may still read it
  if (kind == VIT_ALLOC_HOST_STAGING) cudaFreeHost(data);
  else cudaFree(data);
}

vit_status copy(void* context, void* dst, const void* src, size_t bytes, int32_t kind, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto* ctx = static_cast<Context*>(context);
    check(cudaSetDevice(ctx->device), "cudaSetDevice");
    if (kind == VIT_COPY_HOST_TO_DEVICE_QUEUED) {
      if (bytes > ctx->landing_bytes) {
        check(cudaStreamSynchronize(ctx->stream), "cudaStreamSynchronize");
        check(cudaStreamSynchronize(ctx->upload_stream), "cudaStreamSynchronize");
        if (ctx->landing) check(cudaFree(ctx->landing), "cudaFree");
        ctx->landing = nullptr;
        ctx->landing_bytes = 0;
        check(cudaMalloc(&ctx->landing, bytes), "cudaMalloc (upload landing)");
        ctx->landing_bytes = bytes;
      }
      check(cudaStreamWaitEvent(ctx->upload_stream, ctx->landed, 0), "cudaStreamWaitEvent");
      // (From pageable memory CUDA copies the source to its own staging before returning.)
      check(cudaMemcpyAsync(ctx->landing, src, bytes, cudaMemcpyHostToDevice, ctx->upload_stream), "cudaMemcpyAsync");
      check(cudaEventRecord(ctx->uploaded, ctx->upload_stream), "cudaEventRecord");
      check(cudaStreamWaitEvent(ctx->stream, ctx->uploaded, 0), "cudaStreamWaitEvent");
      check(cudaMemcpyAsync(dst, ctx->landing, bytes, cudaMemcpyDeviceToDevice, ctx->stream), "cudaMemcpyAsync");
      check(cudaEventRecord(ctx->landed, ctx->stream), "cudaEventRecord");
      return VIT_STATUS_OK;
    }
    const bool to_host = kind == VIT_COPY_DEVICE_TO_HOST || kind == VIT_COPY_DEVICE_TO_HOST_QUEUED;
    cudaMemcpyKind k = kind == VIT_COPY_HOST_TO_DEVICE ? cudaMemcpyHostToDevice
                       : to_host                       ? cudaMemcpyDeviceToHost
                                                       : cudaMemcpyDeviceToDevice;
    check(cudaMemcpyAsync(dst, src, bytes, k, ctx->stream), "cudaMemcpyAsync");
    if (kind == VIT_COPY_DEVICE_TO_HOST_QUEUED) return VIT_STATUS_OK;  // done by a later mark
    // The host reads what comes back at once; and a pageable source may be reused by the
    // host as soon as we return.
    if (kind != VIT_COPY_DEVICE_TO_DEVICE) check(cudaStreamSynchronize(ctx->stream), "copy");
    return VIT_STATUS_OK;
  });
}

vit_status synchronize(void* context, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    check(cudaStreamSynchronize(static_cast<Context*>(context)->upload_stream), "cudaStreamSynchronize");
    check(cudaStreamSynchronize(static_cast<Context*>(context)->stream), "cudaStreamSynchronize");
    return VIT_STATUS_OK;
  });
}

vit_status mark(void* context, uint64_t* token, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto* ctx = static_cast<Context*>(context);
    check(cudaSetDevice(ctx->device), "cudaSetDevice");
    *token = ctx->next_mark++;
    check(cudaEventRecord(ctx->marks[*token % Context::kMarks], ctx->stream), "cudaEventRecord");
    return VIT_STATUS_OK;
  });
}

vit_status wait_mark(void* context, uint64_t token, char* message, size_t size) {
  return vit_plugin::guard(message, size, [&] {
    auto* ctx = static_cast<Context*>(context);
    check(cudaSetDevice(ctx->device), "cudaSetDevice");
    // A mark so old that its event has been recorded again: wait for everything instead.
    if (ctx->next_mark - token > Context::kMarks) check(cudaStreamSynchronize(ctx->stream), "cudaStreamSynchronize");
    else check(cudaEventSynchronize(ctx->marks[token % Context::kMarks]), "cudaEventSynchronize");
    return VIT_STATUS_OK;
  });
}

vit_backend_api table() {
  vit_backend_api api = vit_plugin::make_table("cuda", "1.0", kOps);
  api.create = create;
  api.destroy = destroy;
  api.describe = describe;
  api.supports = supports;
  api.prepare = prepare;
  api.execute = execute;
  api.release = release;
  api.memory = VIT_MEMORY_DEVICE;
  api.score = score;
  api.alloc = alloc;
  api.free = free_buffer;
  api.copy = copy;
  api.synchronize = synchronize;
  api.claim = claim;
  api.sequence_begin = sequence_begin;
  api.sequence_end = sequence_end;
  api.sequence_forget = sequence_forget;
  api.mark = mark;
  api.wait_mark = wait_mark;
  return api;
}

}  // namespace

VIT_PLUGIN_EXPORT(table())
