// vitbatch backends: the plugins found on the search path, their ABI and ops, and why any
// was rejected.
#include "commands.hpp"
#include "exit_codes.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/plugin_host.hpp"
#include "vitbatch/runtime.hpp"

#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>

namespace vitbatch_cli {
namespace {

// The precisions a backend accepts, found by asking it for a context in each.
std::vector<std::string> precisions(const vitbatch::PluginInfo& p) {
  std::vector<std::string> out;
  for (const char* precision : {"fp32", "bf16", "fp16", "int8"}) {
    vitbatch::BackendOptions o;
    o.precision = precision;
    try {
      vitbatch::Backend probe(p, o);
      out.push_back(precision);
    } catch (const vitbatch::Error&) {
    }
  }
  return out;
}

int run_backends(const std::vector<std::string>& plugin_dirs, bool json) {
  vitbatch::PluginHost host(vitbatch::plugin_search_path(plugin_dirs, {}));
  vitbatch::AutoChoice pick = vitbatch::choose_auto_backend(host);
  nlohmann::json list = nlohmann::json::array();
  for (const vitbatch::PluginInfo& p : host.plugins()) {
    nlohmann::json j = {{"path", p.path}, {"name", p.name}, {"version", p.version}, {"abi", p.abi_version}};
    if (!p.rejected.empty()) {
      j["rejected"] = p.rejected;
      list.push_back(j);
      continue;
    }
    j["score"] = p.score;
    if (!p.unavailable.empty()) j["unavailable"] = p.unavailable;
    nlohmann::json ops = nlohmann::json::array();
    for (vitbatch::Op op : p.ops) ops.push_back(vitbatch::op_name(op));
    j["ops"] = ops;
    j["precisions"] = p.unavailable.empty() ? precisions(p) : std::vector<std::string>{};
    j["auto"] = p.name == pick.backend;
    try {
      vitbatch::Backend backend(p, vitbatch::BackendOptions{});
      j["runs"] = backend.describe();
    } catch (const vitbatch::Error& e) {
      j["cannot_start"] = e.what();
    }
    list.push_back(j);
  }
  if (json) {
    std::cout << nlohmann::json{{"search_path", host.search_path()}, {"auto", pick.backend}, {"backends", list}}.dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
              << "\n";
    return kExitOk;
  }
  std::cout << "search path:";
  for (const auto& d : host.search_path()) std::cout << " " << d;
  std::cout << "\n";
  if (list.empty()) std::cout << "no backend plugins found\n";
  for (const auto& j : list) {
    if (j.contains("rejected")) {
      std::cout << "rejected  " << j["path"].get<std::string>() << ": " << j["rejected"].get<std::string>() << "\n";
      continue;
    }
    std::string precision_list;
    for (const auto& p : j["precisions"]) precision_list += (precision_list.empty() ? "" : ", ") + p.get<std::string>();
    std::cout << (j["auto"].get<bool>() ? "* " : "  ") << j["name"].get<std::string>() << "  "
              << j["version"].get<std::string>() << "  ABI " << j["abi"].get<uint32_t>()
              << (precision_list.empty() ? "" : "  precisions: " + precision_list) << "  " << j["path"].get<std::string>()
              << "\n    ops:";
    for (const auto& op : j["ops"]) std::cout << " " << op.get<std::string>();
    if (j.contains("unavailable")) std::cout << "\n    not available here: " << j["unavailable"].get<std::string>() << "\n";
    else if (j.contains("runs")) std::cout << "\n    runs: " << j["runs"].get<std::string>() << "\n";
    else std::cout << "\n    cannot start: " << j["cannot_start"].get<std::string>() << "\n";
  }
  std::cout << "* = what --backend auto runs on" << (pick.why.empty() ? "" : " (" + pick.why + ")") << "\n";
  return kExitOk;
}

}  // namespace

void set_backends_command(CLI::App& app, int* exit_code) {
  auto dirs = std::make_shared<std::vector<std::string>>();
  auto json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("backends", "list backend plugins found, their ABI, precisions and ops");
  cmd->add_option("--plugin-dir", *dirs, "directory searched first for backend plugins");
  cmd->add_flag("--json", *json, "one JSON object on stdout");
  cmd->callback([dirs, json, exit_code] { *exit_code = run_backends(*dirs, *json); });
}

}  // namespace vitbatch_cli
