/* vit_plugin.h: the whole C ABI between the vitbatch host and a backend plugin.
 *
 * A backend is a shared module exporting one symbol, vit_plugin_init (VIT_PLUGIN_ENTRY).
 * Rules of the boundary:
 *  - Pure C. No C++ types and no exceptions cross it: every entry returns a vit_status and,
 *    on failure, writes a NUL-terminated one-line message into the host's buffer.
 *  - Structs start with their version or size; fields are only ever appended. The host reads
 *    only the slots a table's struct_size covers, so a plugin built against an older layout
 *    (ABI VIT_PLUGIN_ABI_OLDEST or later) keeps loading: what it lacks takes the defaults.
 *  - Constant inputs (weights) are the host's, valid until the host destroys the context; a
 *    device backend uploads them once, in prepare().
 *  - Activation buffers: a host-memory backend (memory == VIT_MEMORY_HOST, and every ABI 1
 *    plugin) computes in buffers the host owns. A device backend allocates the buffers of
 *    the nodes it runs with alloc(); the host passes them back in the nodes' tensors, never
 *    reads them, and moves data between placements only with copy(). Buffers stay valid, at
 *    the same address, from prepare() to release() of every node that uses them.
 *  - execute() may return before the work is done (a device queue); work of one context runs
 *    in the order it was asked for, and synchronize() waits for all of it.
 *  - What a plugin allocates it frees in destroy/release/free.
 *  - A plugin does no work in static initialisers and must tolerate never being unloaded.
 */
#ifndef VIT_PLUGIN_H
#define VIT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes. The host loads plugins built against any version from
 * VIT_PLUGIN_ABI_OLDEST up to its own, reading only the slots their tables have. */
#define VIT_PLUGIN_ABI_VERSION 2u
#define VIT_PLUGIN_ABI_OLDEST 1u
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

/* Where a backend's activation buffers live (vit_backend_api.memory). */
typedef enum vit_memory {
  VIT_MEMORY_HOST = 0,   /* the host allocates them, plain CPU memory */
  VIT_MEMORY_DEVICE = 1  /* the backend allocates them with alloc(); the host never reads them */
} vit_memory;

/* What alloc() is asked for. */
typedef enum vit_alloc_kind {
  VIT_ALLOC_DEVICE = 0,       /* an activation buffer in the backend's memory */
  VIT_ALLOC_HOST_STAGING = 1  /* host memory the backend copies fastest from/to (pinned) */
} vit_alloc_kind;

/* The direction of copy(). */
typedef enum vit_copy_kind {
  VIT_COPY_HOST_TO_DEVICE = 1,  /* ordered before the backend's later work */
  VIT_COPY_DEVICE_TO_HOST = 2,  /* waits for the backend's earlier work; done when it returns */
  VIT_COPY_DEVICE_TO_DEVICE = 3,
  /* Only to a backend with mark(): */
  VIT_COPY_HOST_TO_DEVICE_QUEUED = 4, /* as HOST_TO_DEVICE, but from the backend's staging
                                         memory it may return before the source is read: the
                                         host leaves the source as it is until a mark() made
                                         after the copy has been waited (other memory the
                                         backend reads before it returns) */
  VIT_COPY_DEVICE_TO_HOST_QUEUED = 5  /* into the backend's staging memory; returns at once,
                                         without waiting: what it copies is there once a
                                         mark() made after it has been waited */
} vit_copy_kind;

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
  /* ---- ABI 2 ---- */
  /* Bit i set: inputs[i] is a constant (a weight): host memory, valid until the context is
   * destroyed, whatever the backend's memory. Other inputs and the outputs are activations,
   * in the backend's memory. */
  uint64_t constant_inputs;
  /* The graph's value ids of the inputs (n_inputs of them) and of the output: how the nodes
   * that claim() is offered connect. */
  const int32_t* input_ids;
  int32_t output_id;
  /* op == VIT_OP_FUSED: the run of nodes the backend claimed, in order. Their tensors carry
   * data for the values that cross the run's edge (read from before it, or used after it)
   * and NULL for values that live and die inside it, which the backend keeps to itself. The
   * fused node's own inputs/outputs list the crossing values once each. */
  int32_t n_fused;
  const vit_node* fused;
} vit_node;

/* The op of a fused step (not a graph op: only backends that claim() ever see it). */
#define VIT_OP_FUSED 1000

/* Whether node->inputs[i] is a constant (0 for nodes from an ABI 1 host). */
#define VIT_INPUT_IS_CONSTANT(node, i)                                                       \
  ((node)->struct_size >= offsetof(vit_node, constant_inputs) + sizeof(uint64_t) &&          \
   (((node)->constant_inputs >> (i)) & 1u))

typedef struct vit_host_api {
  uint32_t abi_version;
  uint32_t struct_size;
  /* level: 0 debug, 1 info, 2 warning. Thread-safe. */
  void (*log)(int32_t level, const char* message);
} vit_host_api;

/* One backend option, both as text: `backend: {options: {tf32: true}}` arrives as
 * {"tf32", "true"}; nested keys are joined with '.', a list arrives as JSON text. */
typedef struct vit_option {
  const char* key;
  const char* value;
} vit_option;

typedef struct vit_backend_config {
  uint32_t struct_size;
  int32_t threads;          /* >= 1 */
  const char* precision;    /* "fp32", "bf16", "fp16", "int8" */
  const char* options_json; /* the same options as a JSON object, "{}" if none (ABI 1) */
  /* ---- ABI 2 ---- */
  int32_t n_options;
  const vit_option* options;
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

  /* ---- ABI 2: read only when struct_size covers them; absent means the default ---- */
  int32_t memory; /* vit_memory (default VIT_MEMORY_HOST) */
  /* (optional) How well this backend suits this machine, for `--backend auto`, asked without
   * a context: higher wins (reference 1, blas 10, onednn 20, cuda 100); 0 or less means it
   * cannot run here, with the reason in message ("no CUDA device"). Default 0: never auto. */
  int32_t (*score)(char* message, size_t message_size);
  /* (device memory: required) A buffer of `bytes` of the kind asked (vit_alloc_kind). */
  vit_status (*alloc)(void* context, size_t bytes, int32_t kind, void** data,
                      char* message, size_t message_size);
  void (*free)(void* context, void* data, int32_t kind);
  /* (device memory: required) Moves bytes between host memory and this backend's buffers,
   * or within them (vit_copy_kind). */
  vit_status (*copy)(void* context, void* dst, const void* src, size_t bytes, int32_t kind,
                     char* message, size_t message_size);
  /* (optional) Waits until all work asked of the context is done. */
  vit_status (*synchronize)(void* context, char* message, size_t message_size);
  /* (optional) Fusion, as ONNX Runtime's plugin execution providers claim subgraphs: offered
   * the graph's nodes from the first not yet placed to the end (value ids set, no data),
   * sets *length to how many of them, from the first, it runs as one step (0 or 1: none).
   * The host then prepares and executes them as one VIT_OP_FUSED node. Asked before
   * supports(), in the configured backend order. */
  vit_status (*claim)(void* context, const vit_node* nodes, int32_t n_nodes, int32_t* length,
                      char* message, size_t message_size);
  /* 1: contexts of this plugin may run at the same time, each on its own host thread and using
   * only its own `threads` (no process-wide thread setting, no shared scratch), so the host
   * may run several images side by side, one context per lane. Default 0: the host never
   * calls two contexts of the plugin at once. Host-memory backends only. */
  int32_t concurrent_contexts;
  /* (optional, device backends) Recording, as CUDA graphs: the host brackets a run of
   * consecutive execute()s of this context with sequence_begin(key) and sequence_end(key),
   * where the same key always means the same nodes, states and buffers. begin sets *replayed
   * to 1 when the backend has queued the whole run itself (a recording of it), and the host
   * then makes none of its execute() calls; to 0 when the host is to make them (the backend
   * may record them). end sets *rerun to 1 when a recording failed and none of the run was
   * done: the host then executes the run again, unbracketed. An execute() that fails
   * between them ends the bracket (the host calls no end; the backend drops what it was
   * recording). sequence_forget(key): the run's nodes are being released (their buffers
   * freed); drop what was recorded for it. Keys are unique within a process. */
  vit_status (*sequence_begin)(void* context, uint64_t key, int32_t* replayed,
                               char* message, size_t message_size);
  vit_status (*sequence_end)(void* context, uint64_t key, int32_t* rerun,
                             char* message, size_t message_size);
  void (*sequence_forget)(void* context, uint64_t key);
  /* (optional, device backends) Marks in the context's queue, so the host can keep two
   * batches in flight (the upload of the next overlapping the work on this one): mark() sets
   * *token for all the work asked of the context so far, wait_mark(token) returns when that
   * is done. The host keeps at most 4 marks unwaited. With both, the host may use the QUEUED
   * copy kinds. */
  vit_status (*mark)(void* context, uint64_t* token, char* message, size_t message_size);
  vit_status (*wait_mark)(void* context, uint64_t token, char* message, size_t message_size);
} vit_backend_api;

/* The size of an ABI 1 table: everything before `memory`. */
#define VIT_BACKEND_API_V1_SIZE offsetof(vit_backend_api, memory)

/* The entry point. Returns the plugin's table (static storage, never freed), or NULL if the
 * plugin cannot serve this host. host stays valid for the life of the process. */
typedef const vit_backend_api* (*vit_plugin_init_fn)(const vit_host_api* host,
                                                     uint32_t host_abi_version);

#ifdef __cplusplus
}
#endif

#endif /* VIT_PLUGIN_H */
