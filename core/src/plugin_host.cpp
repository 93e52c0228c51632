#include "vitbatch/plugin_host.hpp"

#include "vitbatch/error.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>

namespace fs = std::filesystem;

namespace vitbatch {
namespace {

constexpr size_t kMessageSize = 1024;

void host_log(int32_t level, const char* message) {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  if (level >= 1) std::fprintf(stderr, "vitbatch: %s\n", message ? message : "");
}

const vit_host_api kHostApi = {
    /* .abi_version = */ VIT_PLUGIN_ABI_VERSION,
    /* .struct_size = */ sizeof(vit_host_api),
    /* .log         = */ host_log,
};

std::string executable_dir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

bool is_plugin_file(const fs::path& p) {
  std::string name = p.filename().string();
  return name.rfind("libvitbatch_backend_", 0) == 0 && p.extension() == ".so";
}

PluginInfo load_plugin(const std::string& path) {
  PluginInfo info;
  info.path = path;
  // RTLD_LOCAL: a backend's libraries never resolve another backend's symbols. Plugins are
  // never dlclosed: a library they pull in may have registered atexit handlers.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* err = dlerror();
    info.rejected = std::string("cannot load: ") + (err ? err : "unknown dlopen error");
    return info;
  }
  auto init = reinterpret_cast<vit_plugin_init_fn>(dlsym(handle, VIT_PLUGIN_ENTRY));
  if (!init) {
    info.rejected = "no " VIT_PLUGIN_ENTRY " symbol: not a vitbatch backend";
    return info;
  }
  const vit_backend_api* api = init(&kHostApi, VIT_PLUGIN_ABI_VERSION);
  if (!api) {
    info.rejected = VIT_PLUGIN_ENTRY " returned no backend table";
    return info;
  }
  info.abi_version = api->abi_version;
  if (api->abi_version != VIT_PLUGIN_ABI_VERSION) {
    info.rejected = "plugin ABI version " + std::to_string(api->abi_version) +
                    ", this vitbatch needs ABI version " + std::to_string(VIT_PLUGIN_ABI_VERSION);
    return info;
  }
  if (api->struct_size < sizeof(vit_backend_api) || !api->name || !api->create || !api->destroy ||
      !api->supports || !api->execute) {
    info.rejected = "backend table is incomplete (struct_size " + std::to_string(api->struct_size) +
                    ", required entries missing)";
    return info;
  }
  info.name = api->name;
  info.version = api->version ? api->version : "";
  for (int32_t i = 0; i < api->n_ops; ++i)
    if (api->ops[i] >= 0 && api->ops[i] < VIT_OP_COUNT) info.ops.push_back(static_cast<Op>(api->ops[i]));
  info.api = api;
  return info;
}

}  // namespace

std::vector<std::string> plugin_search_path(const std::vector<std::string>& flag_dirs,
                                            const std::vector<std::string>& config_dirs) {
  std::vector<std::string> path(flag_dirs);
  path.insert(path.end(), config_dirs.begin(), config_dirs.end());
  if (const char* env = std::getenv("VITBATCH_PLUGIN_PATH")) {
    std::string s(env);
    size_t start = 0;
    while (start <= s.size()) {
      size_t end = s.find(':', start);
      if (end == std::string::npos) end = s.size();
      if (end > start) path.push_back(s.substr(start, end - start));
      start = end + 1;
    }
  }
  std::string exe = executable_dir();
  if (!exe.empty()) {
    path.push_back(exe);
    path.push_back((fs::path(exe).parent_path() / "lib" / "vitbatch").string());
  }
  return path;
}

PluginHost::PluginHost(const std::vector<std::string>& search_path) : search_path_(search_path) {
  std::vector<std::string> seen_dirs;
  for (const std::string& dir : search_path) {
    std::error_code ec;
    fs::path canonical = fs::weakly_canonical(dir, ec);
    if (ec || !fs::is_directory(canonical, ec)) continue;
    if (std::find(seen_dirs.begin(), seen_dirs.end(), canonical.string()) != seen_dirs.end()) continue;
    seen_dirs.push_back(canonical.string());
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(canonical, ec))
      if (is_plugin_file(entry.path())) files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) {
      PluginInfo info = load_plugin(file.string());
      for (const PluginInfo& earlier : plugins_)
        if (info.rejected.empty() && earlier.rejected.empty() && earlier.name == info.name) {
          info.rejected = "shadowed by " + earlier.path + " (same backend name, earlier in the search path)";
          info.api = nullptr;
        }
      plugins_.push_back(std::move(info));
    }
  }
}

const PluginInfo& PluginHost::find(const std::string& name) const {
  std::string available;
  for (const PluginInfo& p : plugins_) {
    if (p.rejected.empty() && p.name == name) return p;
    if (p.rejected.empty()) available += (available.empty() ? "" : ", ") + p.name;
  }
  for (const PluginInfo& p : plugins_)
    if (!p.rejected.empty() && p.path.find("backend_" + name + ".so") != std::string::npos)
      throw Error("backend '" + name + "' was rejected: " + p.path + ": " + p.rejected);
  throw Error("no backend named '" + name + "' (available: " + (available.empty() ? "none" : available) +
              "; see `vitbatch backends`)");
}

Backend::Backend(const PluginInfo& plugin, const BackendOptions& options)
    : api_(plugin.api), name_(plugin.name), ops_(plugin.ops) {
  if (!api_) throw Error("backend '" + plugin.name + "' is not usable: " + plugin.rejected);
  vit_backend_config config{};
  config.struct_size = sizeof(config);
  config.threads = options.threads;
  config.precision = options.precision.c_str();
  config.options_json = options.options_json.c_str();
  char message[kMessageSize] = "";
  if (api_->create(&config, &context_, message, sizeof message) != VIT_STATUS_OK)
    throw Error("backend '" + name_ + "' failed to start: " + message);
}

Backend::~Backend() {
  if (context_) api_->destroy(context_);
}

std::string Backend::describe() const {
  const char* d = api_->describe ? api_->describe(context_) : nullptr;
  return d ? d : "";
}

bool Backend::implements(Op op) const { return std::find(ops_.begin(), ops_.end(), op) != ops_.end(); }

bool Backend::supports(const vit_node& node, std::string* why) const {
  if (!implements(static_cast<Op>(node.op))) {
    if (why) *why = "op not implemented";
    return false;
  }
  char message[kMessageSize] = "";
  vit_status s = api_->supports(context_, &node, message, sizeof message);
  if (s == VIT_STATUS_OK) return true;
  if (s == VIT_STATUS_UNSUPPORTED) {
    if (why) *why = message;
    return false;
  }
  throw Error("backend '" + name_ + "' failed on node '" + node.name + "': " + message);
}

void* Backend::prepare(const vit_node& node) {
  if (!api_->prepare) return nullptr;
  void* state = nullptr;
  char message[kMessageSize] = "";
  if (api_->prepare(context_, &node, &state, message, sizeof message) != VIT_STATUS_OK)
    throw Error("backend '" + name_ + "' failed to prepare node '" + node.name + "': " + message);
  return state;
}

void Backend::execute(void* state, const vit_node& node) {
  char message[kMessageSize] = "";
  if (api_->execute(context_, state, &node, message, sizeof message) != VIT_STATUS_OK)
    throw Error("backend '" + name_ + "' failed on node '" + node.name + "' (" +
                op_name(static_cast<Op>(node.op)) + "): " + message);
}

void Backend::release(void* state) {
  if (api_->release && state) api_->release(context_, state);
}

}  // namespace vitbatch
