// plugin_host.hpp: finds backend plugins, loads them (the only dlopen in vitbatch), checks
// their ABI, and wraps one created backend context behind a C++ interface.
#pragma once

#include "vit_plugin.h"
#include "vitbatch/ops.hpp"

#include <memory>
#include <string>
#include <vector>

namespace vitbatch {

struct PluginInfo {
  std::string path;
  std::string name;           // from the file name until loaded, then the plugin's own
  std::string version;
  uint32_t abi_version = 0;
  std::vector<Op> ops;
  // The plugin's table widened to this host's layout (slots an older plugin lacks hold their
  // defaults); null when rejected.
  std::shared_ptr<const vit_backend_api> api;
  std::string rejected;       // why it cannot be used; empty when usable
  int32_t score = 0;          // for `auto`: higher wins; <= 0 never picked
  std::string unavailable;    // why score() said it cannot run here ("no CUDA device")
};

// The plugin search path, in order: --plugin-dir, the config's plugin_dirs,
// $VITBATCH_PLUGIN_PATH (':'-separated), the executable's directory, then <prefix>/lib/vitbatch.
std::vector<std::string> plugin_search_path(const std::vector<std::string>& flag_dirs,
                                            const std::vector<std::string>& config_dirs);

// Plugins are loaded only when asked for, and each is first tried in a child process (fork,
// dlopen, init, report; killed after probe_timeout): a plugin whose init crashes, spins or is
// a truncated file is then rejected with that reason instead of taking vitbatch down. Only
// regular files owned by root or by this user, and not writable by others, are candidates.
class PluginHost {
 public:
  // Lists the candidate files of every directory (nothing is loaded). Never throws.
  explicit PluginHost(const std::vector<std::string>& search_path, int probe_timeout_ms = 10000);

  // Every candidate, loaded (or rejected with its reason): for `vitbatch backends`.
  const std::vector<PluginInfo>& plugins();
  const std::vector<std::string>& search_path() const { return search_path_; }
  // The first usable plugin of that name, loading only that one; throws Error saying why
  // there is none (rejected with its reason, or the names of the files there are).
  const PluginInfo& find(const std::string& name);
  // Like find, without throwing: null, with the reason in *why, when there is none.
  const PluginInfo* try_find(const std::string& name, std::string* why);

 private:
  void load(PluginInfo& candidate);
  std::vector<std::string> search_path_;
  int probe_timeout_ms_;
  std::vector<PluginInfo> plugins_;  // candidates in search order; loaded on demand
  std::vector<bool> loaded_;
};

struct BackendOptions {
  int threads = 1;
  std::string precision = "fp32";
  std::string options_json = "{}";
  // The same options flattened to key/value text (what ABI 2 plugins read).
  std::vector<std::pair<std::string, std::string>> options;
};

// Flattens a JSON object of options: nested keys joined with '.', scalars as text (strings
// unquoted), lists as JSON text.
std::vector<std::pair<std::string, std::string>> flatten_options(const std::string& options_json);

// options_json (an object, or anything else taken as an empty one) with each "KEY=VALUE" of
// `pairs` set on it as a string: what --backend-option adds to the YAML's backend.options.
// Throws Error for a pair without '=' or with an empty key.
std::string with_option_pairs(const std::string& options_json, const std::vector<std::string>& pairs);

// One live context of a plugin. Every call checks the status and throws Error with the
// plugin's message, naming the backend (and node).
class Backend {
 public:
  Backend(const PluginInfo& plugin, const BackendOptions& options);
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  const std::string& name() const { return name_; }
  std::string describe() const;
  bool implements(Op op) const;
  // True to accept; false with the plugin's reason in *why.
  bool supports(const vit_node& node, std::string* why) const;
  void* prepare(const vit_node& node);
  void execute(void* state, const vit_node& node);
  void release(void* state);

  // Where its activation buffers live; device backends allocate them and move data.
  bool device_memory() const { return api_->memory == VIT_MEMORY_DEVICE; }
  // Whether contexts of this plugin may run side by side on different threads (lanes).
  bool concurrent_contexts() const { return api_->concurrent_contexts == 1 && !device_memory(); }
  void* alloc(size_t bytes, vit_alloc_kind kind);
  void free(void* data, vit_alloc_kind kind);
  void copy(void* dst, const void* src, size_t bytes, vit_copy_kind kind);
  void synchronize();
  // How many of `nodes`, from the first, the backend runs as one fused step (0: none).
  int claim(const vit_node* nodes, int n_nodes);
  // Recording (vit_backend_api.sequence_begin): whether the backend records runs of its
  // executes (CUDA graphs); begin() true when the backend queued the whole run itself, end()
  // true when its recording failed and the host must execute the run again.
  bool records() const { return device_memory() && api_->sequence_begin && api_->sequence_end; }
  bool sequence_begin(uint64_t key);
  bool sequence_end(uint64_t key);
  void sequence_forget(uint64_t key);
  // Marks (vit_backend_api.mark): whether the backend has them, and so the QUEUED copies.
  bool queues() const { return device_memory() && api_->mark && api_->wait_mark; }
  uint64_t mark();
  void wait_mark(uint64_t token);

 private:
  std::shared_ptr<const vit_backend_api> api_;
  std::string name_;
  std::vector<Op> ops_;
  void* context_ = nullptr;
};

}  // namespace vitbatch
