#include "vitbatch/plugin_host.hpp"

#include "vitbatch/error.hpp"

#include <nlohmann/json.hpp>

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>

namespace fs = std::filesystem;

namespace vitbatch {
namespace {

constexpr size_t kMessageSize = 1024;

// Calls a plugin entry, entry(message, size), that writes a one-line reason when it fails;
// then throws "backend 'BACKEND' WHAT: reason".
template <class Entry>
void call_entry(const std::string& backend, const char* what, Entry entry) {
  char message[kMessageSize] = "";
  if (entry(message, sizeof message) != VIT_STATUS_OK) throw Error("backend '" + backend + "' " + what + ": " + message);
}

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
  if (api->abi_version < VIT_PLUGIN_ABI_OLDEST || api->abi_version > VIT_PLUGIN_ABI_VERSION) {
    info.rejected = "plugin ABI version " + std::to_string(api->abi_version) + ", this vitbatch loads ABI versions " +
                    std::to_string(VIT_PLUGIN_ABI_OLDEST) + " to " + std::to_string(VIT_PLUGIN_ABI_VERSION);
    return info;
  }
  // Read only the slots the plugin's table has: an older plugin's table is shorter, and
  // what it lacks keeps the defaults (host memory, no score).
  if (api->struct_size < VIT_BACKEND_API_V1_SIZE) {
    info.rejected = "backend table is incomplete (struct_size " + std::to_string(api->struct_size) +
                    ", an ABI 1 table has " + std::to_string(VIT_BACKEND_API_V1_SIZE) + ")";
    return info;
  }
  vit_backend_api table{};
  table.memory = VIT_MEMORY_HOST;
  std::memcpy(&table, api, std::min<size_t>(api->struct_size, sizeof table));
  table.struct_size = sizeof table;
  if (!table.name || !table.create || !table.destroy || !table.supports || !table.execute) {
    info.rejected = "backend table is incomplete (name, create, destroy, supports and execute are required)";
    return info;
  }
  if (table.memory != VIT_MEMORY_HOST && (table.memory != VIT_MEMORY_DEVICE || !table.alloc || !table.free || !table.copy)) {
    info.rejected = "backend table is incomplete (a device-memory backend needs alloc, free and copy)";
    return info;
  }
  api = nullptr;
  info.name = table.name;
  info.version = table.version ? table.version : "";
  for (int32_t i = 0; i < table.n_ops; ++i)
    if (table.ops[i] >= 0 && table.ops[i] < VIT_OP_COUNT) info.ops.push_back(static_cast<Op>(table.ops[i]));
  if (table.score) {
    char message[kMessageSize] = "";
    info.score = table.score(message, sizeof message);
    if (info.score <= 0) info.unavailable = message[0] ? message : "cannot run on this machine";
  }
  info.api = std::make_shared<const vit_backend_api>(table);
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

namespace {

// The backend name a file is named for: libvitbatch_backend_<name>.so.
std::string name_in_file(const fs::path& p) {
  std::string file = p.filename().string();
  return file.substr(20, file.size() - 20 - 3);
}

// Why a file may not be loaded, or "": it must be a regular file owned by root or by this
// user and not writable by group or others (anyone who can write it can run code as us).
std::string vet_file(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return std::string("cannot stat: ") + std::strerror(errno);
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  if (st.st_uid != 0 && st.st_uid != geteuid()) return "owned by another user (uid " + std::to_string(st.st_uid) + ")";
  if (st.st_mode & (S_IWGRP | S_IWOTH)) return "writable by group or others";
  return "";
}

// Loads the plugin in a child process first. "" when the child loaded it cleanly (then the
// caller loads it here), else why not: its own rejection, or how the child died.
std::string probe_in_child(const std::string& path, int timeout_ms) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return std::string("cannot probe: ") + std::strerror(errno);
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    ::close(fds[0]), ::close(fds[1]);
    return std::string("cannot probe: ") + std::strerror(errno);
  }
  if (pid == 0) {  // the child: load, report, leave without running any exit handler
    ::close(fds[0]);
    // A crash must end the child with its signal, not run handlers inherited from the parent.
    for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGINT, SIGTERM}) std::signal(sig, SIG_DFL);
    std::string verdict = load_plugin(path).rejected;
    verdict = "done:" + verdict;
    (void)!::write(fds[1], verdict.data(), verdict.size());
    _exit(0);
  }
  ::close(fds[1]);
  std::string report;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  bool timed_out = false;
  while (true) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now()).count());
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int ready = poll(&p, 1, left);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buf[1024];
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the child is gone (or done)
    report.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return "did not finish loading within " + std::to_string(timeout_ms / 1000.0).substr(0, 4) + " s (killed)";
  if (WIFSIGNALED(status))
    return "crashed while loading (signal " + std::to_string(WTERMSIG(status)) + ", " + strsignal(WTERMSIG(status)) + ")";
  if (report.rfind("done:", 0) != 0) return "exited while loading (status " + std::to_string(WEXITSTATUS(status)) + ")";
  return report.substr(5);
}

}  // namespace

PluginHost::PluginHost(const std::vector<std::string>& search_path, int probe_timeout_ms)
    : search_path_(search_path), probe_timeout_ms_(probe_timeout_ms) {
  std::vector<std::string> seen_dirs;
  for (const std::string& dir : search_path) {
    std::error_code ec;
    fs::path canonical = fs::weakly_canonical(dir, ec);
    if (ec || !fs::is_directory(canonical, ec)) continue;
    if (std::find(seen_dirs.begin(), seen_dirs.end(), canonical.string()) != seen_dirs.end()) continue;
    seen_dirs.push_back(canonical.string());
    std::vector<fs::path> files;
    for (auto it = fs::directory_iterator(canonical, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
      if (is_plugin_file(it->path())) files.push_back(it->path());
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) {
      PluginInfo info;
      info.path = file.string();
      info.name = name_in_file(file);
      plugins_.push_back(std::move(info));
      loaded_.push_back(false);
    }
  }
}

void PluginHost::load(PluginInfo& p) {
  size_t index = static_cast<size_t>(&p - plugins_.data());
  if (loaded_[index]) return;
  loaded_[index] = true;
  std::string file_name = p.name;
  std::string why = vet_file(p.path);
  if (why.empty()) why = probe_in_child(p.path, probe_timeout_ms_);
  if (!why.empty()) {
    p.rejected = why;
    return;
  }
  p = load_plugin(p.path);
  if (p.rejected.empty() && p.name != file_name) {
    p.rejected = "names itself '" + p.name + "' but its file is named for '" + file_name + "'";
    p.api = nullptr;
  }
  if (!p.rejected.empty()) return;
  for (size_t i = 0; i < index; ++i)
    if (loaded_[i] && plugins_[i].rejected.empty() && plugins_[i].name == p.name) {
      p.rejected = "shadowed by " + plugins_[i].path + " (same backend name, earlier in the search path)";
      p.api = nullptr;
    }
}

const std::vector<PluginInfo>& PluginHost::plugins() {
  for (PluginInfo& p : plugins_) load(p);
  return plugins_;
}

const PluginInfo* PluginHost::try_find(const std::string& name, std::string* why) {
  std::string reasons;
  for (PluginInfo& p : plugins_) {
    if (name_in_file(p.path) != name) continue;
    load(p);
    if (p.rejected.empty() && p.name == name) return &p;
    if (!p.rejected.empty()) reasons += (reasons.empty() ? "" : "; ") + p.path + ": " + p.rejected;
  }
  if (why) {
    if (!reasons.empty()) {
      *why = "backend '" + name + "' was rejected: " + reasons;
    } else {
      std::string available;
      for (const PluginInfo& p : plugins_) available += (available.empty() ? "" : ", ") + name_in_file(p.path);
      *why = "no backend named '" + name + "' (plugin files found for: " + (available.empty() ? "none" : available) +
             "; see `vitbatch backends`)";
    }
  }
  return nullptr;
}

const PluginInfo& PluginHost::find(const std::string& name) {
  std::string why;
  const PluginInfo* p = try_find(name, &why);
  if (!p) throw Error(why);
  return *p;
}

Backend::Backend(const PluginInfo& plugin, const BackendOptions& options)
    : api_(plugin.api), name_(plugin.name), ops_(plugin.ops) {
  if (!api_) throw Error("backend '" + plugin.name + "' is not usable: " + plugin.rejected);
  vit_backend_config config{};
  config.struct_size = sizeof(config);
  config.threads = options.threads;
  config.precision = options.precision.c_str();
  config.options_json = options.options_json.c_str();
  std::vector<vit_option> pairs;
  for (const auto& [key, value] : options.options) pairs.push_back({key.c_str(), value.c_str()});
  config.n_options = static_cast<int32_t>(pairs.size());
  config.options = pairs.data();
  call_entry(name_, "failed to start", [&](char* m, size_t n) { return api_->create(&config, &context_, m, n); });
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
  call_entry(name_, ("failed to prepare node '" + std::string(node.name) + "'").c_str(),
             [&](char* m, size_t n) { return api_->prepare(context_, &node, &state, m, n); });
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

void* Backend::alloc(size_t bytes, vit_alloc_kind kind) {
  void* data = nullptr;
  char message[kMessageSize] = "";
  if (!api_->alloc || api_->alloc(context_, bytes, kind, &data, message, sizeof message) != VIT_STATUS_OK || !data)
    throw Error("backend '" + name_ + "' could not allocate " + std::to_string(bytes) + " bytes: " +
                (message[0] ? message : "no alloc entry"));
  return data;
}

void Backend::free(void* data, vit_alloc_kind kind) {
  if (api_->free && data) api_->free(context_, data, kind);
}

void Backend::copy(void* dst, const void* src, size_t bytes, vit_copy_kind kind) {
  char message[kMessageSize] = "";
  if (!api_->copy || api_->copy(context_, dst, src, bytes, kind, message, sizeof message) != VIT_STATUS_OK)
    throw Error("backend '" + name_ + "' failed to copy " + std::to_string(bytes) + " bytes: " +
                (message[0] ? message : "no copy entry"));
}

void Backend::synchronize() {
  if (api_->synchronize) call_entry(name_, "failed", [&](char* m, size_t n) { return api_->synchronize(context_, m, n); });
}

bool Backend::sequence_begin(uint64_t key) {
  int32_t replayed = 0;
  call_entry(name_, "failed to start a recorded run",
             [&](char* m, size_t n) { return api_->sequence_begin(context_, key, &replayed, m, n); });
  return replayed == 1;
}

bool Backend::sequence_end(uint64_t key) {
  int32_t rerun = 0;
  call_entry(name_, "failed to end a recorded run", [&](char* m, size_t n) { return api_->sequence_end(context_, key, &rerun, m, n); });
  return rerun == 1;
}

void Backend::sequence_forget(uint64_t key) {
  if (api_->sequence_forget) api_->sequence_forget(context_, key);
}

uint64_t Backend::mark() {
  uint64_t token = 0;
  call_entry(name_, "failed to mark its queue", [&](char* m, size_t n) { return api_->mark(context_, &token, m, n); });
  return token;
}

void Backend::wait_mark(uint64_t token) {
  call_entry(name_, "failed", [&](char* m, size_t n) { return api_->wait_mark(context_, token, m, n); });
}

int Backend::claim(const vit_node* nodes, int n_nodes) {
  if (!api_->claim || n_nodes < 2) return 0;
  int32_t length = 0;
  call_entry(name_, ("failed while claiming nodes from '" + std::string(nodes[0].name) + "'").c_str(),
             [&](char* m, size_t n) { return api_->claim(context_, nodes, n_nodes, &length, m, n); });
  if (length < 0 || length > n_nodes)
    throw Error("backend '" + name_ + "' claimed " + std::to_string(length) + " nodes of the " +
                std::to_string(n_nodes) + " offered");
  return length >= 2 ? length : 0;
}

std::vector<std::pair<std::string, std::string>> flatten_options(const std::string& options_json) {
  std::vector<std::pair<std::string, std::string>> out;
  nlohmann::json j = nlohmann::json::parse(options_json, nullptr, false);
  if (!j.is_object()) return out;
  std::function<void(const std::string&, const nlohmann::json&)> walk = [&](const std::string& prefix, const nlohmann::json& v) {
    if (v.is_object()) {
      for (auto it = v.begin(); it != v.end(); ++it) walk(prefix.empty() ? it.key() : prefix + "." + it.key(), it.value());
    } else if (v.is_string()) {
      out.emplace_back(prefix, v.get<std::string>());
    } else {
      out.emplace_back(prefix, v.dump());
    }
  };
  walk("", j);
  return out;
}

std::string with_option_pairs(const std::string& options_json, const std::vector<std::string>& pairs) {
  nlohmann::json j = nlohmann::json::parse(options_json, nullptr, false);
  if (!j.is_object()) j = nlohmann::json::object();
  for (const std::string& pair : pairs) {
    const size_t eq = pair.find('=');
    if (eq == std::string::npos || eq == 0) throw Error("expected KEY=VALUE, got '" + pair + "'");
    j[pair.substr(0, eq)] = pair.substr(eq + 1);
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace vitbatch
