/* vit_plugin.h: the whole C ABI between the vitbatch host and a backend plugin.
 *
 * A backend is a shared module exporting one symbol, vit_plugin_init (VIT_PLUGIN_ENTRY).
 * Rules of the boundary:
 *  - Pure C. No C++ types and no exceptions cross it: every entry returns a vit_status and,
 *    on failure, writes a NUL-terminated one-line message into the host's buffer.
 *  - Structs start with their version or size; fields are only ever appended.
 *  - The host owns every tensor it passes. A data pointer is valid only during the call that
 *    receives it (do not cache), except constant inputs, which stay valid until the host
 *    destroys the plugin context. What a plugin allocates it frees in destroy/release.
 *  - A plugin does no work in static initialisers and must tolerate never being unloaded.
 */
#ifndef VIT_PLUGIN_H
#define VIT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change; the host refuses a plugin whose number differs. */
#define VIT_PLUGIN_ABI_VERSION 1u
#define VIT_PLUGIN_ENTRY "vit_plugin_init"
#define VIT_MAX_RANK 8
#define VIT_MAX_INTS 12
#define VIT_MAX_FLOATS 4

typedef enum vit_status {
  VIT_STATUS_OK = 0,
  VIT_STATUS_ERROR = 1,       /* failed; message says why */
  VIT_STATUS_UNSUPPORTED = 2  /* from supports(): decline this node (message says why) */
} vit_status;

typedef enum vit_dtype {
  VIT_DTYPE_F32 = 0,
  VIT_DTYPE_F16 = 1,
  VIT_DTYPE_BF16 = 2,
  VIT_DTYPE_I8 = 3,
  VIT_DTYPE_U8 = 4,
  VIT_DTYPE_I32 = 5
} vit_dtype;

typedef enum vit_op {
#define VIT_OP(id, name) VIT_OP_##id,
#include "vit_ops.def"
#undef VIT_OP
  VIT_OP_COUNT
} vit_op;

/* A tensor as the host lends it. strides are in bytes; the host passes contiguous row-major
 * tensors today but a plugin should honour strides or decline in supports(). */
typedef struct vit_tensor {
  int32_t dtype; /* vit_dtype */
  int32_t rank;
  int64_t shape[VIT_MAX_RANK];
  int64_t strides[VIT_MAX_RANK];
  void* data;    /* NULL in supports(); in prepare() set for constant inputs only */
} vit_tensor;

/* One node of the graph, with its tensors. Valid only during the call that receives it. */
typedef struct vit_node {
  uint32_t struct_size;
  int32_t op;                     /* vit_op */
  int32_t n_inputs;
  const vit_tensor* inputs;
  int32_t n_outputs;
  const vit_tensor* outputs;
  int64_t ints[VIT_MAX_INTS];     /* op parameters, see vit_ops.def */
  float floats[VIT_MAX_FLOATS];
  const char* name;               /* e.g. "blocks.3.attn.qkv", for messages */
} vit_node;

typedef struct vit_host_api {
  uint32_t abi_version;
  uint32_t struct_size;
  /* level: 0 debug, 1 info, 2 warning. Thread-safe. */
  void (*log)(int32_t level, const char* message);
} vit_host_api;

typedef struct vit_backend_config {
  uint32_t struct_size;
  int32_t threads;          /* >= 1 */
  const char* precision;    /* "fp32", "bf16", "int8" */
  const char* options_json; /* backend-specific options as a JSON object, "{}" if none */
} vit_backend_config;

typedef struct vit_backend_api {
  uint32_t abi_version; /* VIT_PLUGIN_ABI_VERSION the plugin was built against */
  uint32_t struct_size; /* sizeof(vit_backend_api) of that build */
  const char* name;     /* short, stable: what --backend names */
  const char* version;
  int32_t n_ops;        /* ops this backend may accept; supports() decides per node */
  const int32_t* ops;

  /* Make a context. Fails (message) on a precision or option it does not accept. */
  vit_status (*create)(const vit_backend_config* config, void** context,
                       char* message, size_t message_size);
  void (*destroy)(void* context);
  /* (optional) One line: kernels, ISA, threads. Owned by the context. */
  const char* (*describe)(void* context);
  /* OK to accept the node, UNSUPPORTED to decline (with the reason), ERROR on failure. */
  vit_status (*supports)(void* context, const vit_node* node, char* message, size_t message_size);
  /* (optional) Called once per node before any execute, with constant inputs' data set, so
   * weights can be pre-packed. *state (may stay NULL) is handed back to execute/release. */
  vit_status (*prepare)(void* context, const vit_node* node, void** state,
                        char* message, size_t message_size);
  vit_status (*execute)(void* context, void* state, const vit_node* node,
                        char* message, size_t message_size);
  /* (optional) Free what prepare() made. */
  void (*release)(void* context, void* state);
} vit_backend_api;

/* The entry point. Returns the plugin's table (static storage, never freed), or NULL if the
 * plugin cannot serve this host. host stays valid for the life of the process. */
typedef const vit_backend_api* (*vit_plugin_init_fn)(const vit_host_api* host,
                                                     uint32_t host_abi_version);

#ifdef __cplusplus
}
#endif

#endif /* VIT_PLUGIN_H */
