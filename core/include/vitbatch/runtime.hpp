// runtime.hpp: what a command needs to run a model: the merged settings (config file, then
// flags), the loaded model, the plugins found, the backend contexts and the executor.
#pragma once

#include "vitbatch/executor.hpp"
#include "vitbatch/model.hpp"
#include "vitbatch/plugin_host.hpp"
#include "vitbatch/run_config.hpp"

#include <memory>
#include <string>
#include <vector>

namespace vitbatch {

struct RuntimeOptions {
  std::string model;
  ModelOverrides model_options;
  PreprocessOverrides preprocess;
  // A plugin's name, or "auto": the fastest exact one found (onednn, else reference).
  std::string backend = "auto";
  BackendOptions backend_options;
  std::vector<std::string> plugin_dirs_flag;
  std::vector<std::string> plugin_dirs_config;
};

class Runtime {
 public:
  // Throws Error (model, plugin, backend or preprocessing problems).
  explicit Runtime(const RuntimeOptions& options);
  ~Runtime();

  const Model& model() const { return model_; }
  Executor& executor() { return *executor_; }
  const PluginHost& plugins() const { return host_; }
  // The backends in the order nodes are offered to them (reference last).
  const std::vector<std::unique_ptr<Backend>>& backends() const { return backends_; }

 private:
  Model model_;
  PluginHost host_;
  std::vector<std::unique_ptr<Backend>> backends_;
  std::unique_ptr<Executor> executor_;
};

}  // namespace vitbatch
