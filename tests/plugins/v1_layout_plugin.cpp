// A plugin built against ABI 1, before the table grew: its table is the old, shorter layout
// (declared here as ABI 1's header had it) and says abi_version 1. The host must load it,
// read none of the newer slots, and run it on host memory.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

extern "C" {
// ABI 1's declarations, frozen: what an old plugin was compiled against.
typedef struct v1_tensor {
  int32_t dtype;
  int32_t rank;
  int64_t shape[8];
  int64_t strides[8];
  void* data;
} v1_tensor;
typedef struct v1_node {
  uint32_t struct_size;
  int32_t op;
  int32_t n_inputs;
  const v1_tensor* inputs;
  int32_t n_outputs;
  const v1_tensor* outputs;
  int64_t ints[12];
  float floats[4];
  const char* name;
} v1_node;
typedef struct v1_config {
  uint32_t struct_size;
  int32_t threads;
  const char* precision;
  const char* options_json;
} v1_config;
typedef struct v1_backend_api {
  uint32_t abi_version;
  uint32_t struct_size;
  const char* name;
  const char* version;
  int32_t n_ops;
  const int32_t* ops;
  int (*create)(const v1_config*, void**, char*, size_t);
  void (*destroy)(void*);
  const char* (*describe)(void*);
  int (*supports)(void*, const v1_node*, char*, size_t);
  int (*prepare)(void*, const v1_node*, void**, char*, size_t);
  int (*execute)(void*, void*, const v1_node*, char*, size_t);
  void (*release)(void*, void*);
} v1_backend_api;
}

namespace {

const int32_t kScale = 11;  // VIT_OP_SCALE: op numbers are append-only
const int32_t kOps[] = {kScale};
int marker;

int create(const v1_config* config, void** context, char*, size_t) {
  *context = &marker;
  return config->struct_size >= sizeof(v1_config) ? 0 : 1;
}
void destroy(void*) {}
int supports(void*, const v1_node* node, char*, size_t) { return node->op == kScale ? 0 : 2; }
int execute(void*, void*, const v1_node* node, char*, size_t) {
  const float* x = static_cast<const float*>(node->inputs[0].data);
  float* y = static_cast<float*>(node->outputs[0].data);
  int64_t n = 1;
  for (int32_t i = 0; i < node->inputs[0].rank; ++i) n *= node->inputs[0].shape[i];
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * node->floats[0];
  return 0;
}

const v1_backend_api kApi = {1, sizeof(v1_backend_api), "v1_layout", "1.0", 1, kOps, create, destroy,
                             nullptr, supports, nullptr, execute, nullptr};

}  // namespace

extern "C" __attribute__((visibility("default"))) const v1_backend_api* vit_plugin_init(const void*, uint32_t) {
  return &kApi;
}
