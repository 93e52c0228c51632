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
  // int8: the calibrated ranges to quantise with (`vitbatch calibrate`); empty: the model's
  // int8_scales.safetensors if it has one. int8_dynamic: quantise each model call by its own
  // min and max instead (one image in lanes; with lanes 1 an image's answer depends on its batch-mates).
  std::string int8_scales;
  bool int8_dynamic = false;
  // Run the model without its classifier: the output is the pooled feature the head reads
  // (timm's forward_head(pre_logits=True)), for embed.
  bool features = false;
  // With features: the output also carries the patch tokens (ViTConfig::output_patch_tokens).
  bool patch_tokens = false;
  // Images run side by side in this many lanes, the threads shared among them
  // (Executor::set_lanes). 0: one lane per thread when every backend allows lanes, else 1;
  // 1: every thread works on each op of the whole batch.
  int lanes = 0;
};

// What "auto" picks among the usable plugins: onednn when it loads, else reference. `why`
// says so in words when it falls back.
struct AutoChoice {
  std::string backend;
  std::string why;  // empty when the fast backend was found
};
AutoChoice choose_auto_backend(PluginHost& host);

class Runtime {
 public:
  // Throws Error (model, plugin, backend or preprocessing problems).
  explicit Runtime(const RuntimeOptions& options);
  ~Runtime();

  const Model& model() const { return model_; }
  Executor& executor() { return *executor_; }
  PluginHost& plugins() { return host_; }
  // The backends in the order nodes are offered to them (reference last).
  const std::vector<std::unique_ptr<Backend>>& backends() const { return backends_; }
  // "onednn fp32, 2 threads": what runs the model, for the start line and the summary.
  std::string running() const;
  // Things a user should know because they change answers or speed, one line each: the
  // defaults used for settings nothing gave, and why "auto" fell back to a slow backend.
  const std::vector<std::string>& notices() const { return notices_; }

 private:
  Model model_;
  PluginHost host_;
  std::vector<std::unique_ptr<Backend>> backends_;
  std::vector<std::vector<std::unique_ptr<Backend>>> lane_backends_;  // per lane, as backends_
  std::unique_ptr<Executor> executor_;  // last: it goes before the backends it runs on
  std::string precision_;
  std::string int8_source_;  // "ranges FILE" or "dynamic", int8 only
  int threads_ = 1;
  std::vector<std::string> notices_;
};

}  // namespace vitbatch
