// vitbatch backends: the plugins found on the search path, their ABI and ops, and why any
// was rejected.
#include "commands.hpp"
#include "exit_codes.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/plugin_host.hpp"

#include <iostream>
#include <memory>

namespace vitbatch_cli {
namespace {

int run_backends(const std::vector<std::string>& plugin_dirs) {
  vitbatch::PluginHost host(vitbatch::plugin_search_path(plugin_dirs, {}));
  std::cout << "search path:";
  for (const auto& d : host.search_path()) std::cout << " " << d;
  std::cout << "\n";
  if (host.plugins().empty()) std::cout << "no backend plugins found\n";
  for (const vitbatch::PluginInfo& p : host.plugins()) {
    if (!p.rejected.empty()) {
      std::cout << "rejected  " << p.path << ": " << p.rejected << "\n";
      continue;
    }
    std::cout << p.name << "  " << p.version << "  ABI " << p.abi_version << "  " << p.path << "\n  ops:";
    for (vitbatch::Op op : p.ops) std::cout << " " << vitbatch::op_name(op);
    try {
      vitbatch::Backend backend(p, vitbatch::BackendOptions{});
      std::cout << "\n  runs: " << backend.describe() << "\n";
    } catch (const vitbatch::Error& e) {
      std::cout << "\n  cannot start: " << e.what() << "\n";
    }
  }
  return kExitOk;
}

}  // namespace

void set_backends_command(CLI::App& app, int* exit_code) {
  auto dirs = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = app.add_subcommand("backends", "list backend plugins found, their ABI and ops");
  cmd->add_option("--plugin-dir", *dirs, "directory searched first for backend plugins");
  cmd->callback([dirs, exit_code] { *exit_code = run_backends(*dirs); });
}

}  // namespace vitbatch_cli
