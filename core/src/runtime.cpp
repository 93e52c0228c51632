#include "vitbatch/runtime.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/preprocess.hpp"

#include <map>

namespace vitbatch {

Runtime::Runtime(const RuntimeOptions& options)
    : model_(load_model(options.model, options.model_options)),
      host_(plugin_search_path(options.plugin_dirs_flag, options.plugin_dirs_config)) {
  options.preprocess.apply(model_.preprocess);
  if (model_.preprocess.input_size != model_.config.image_size)
    throw Error("preprocess input_size " + std::to_string(model_.preprocess.input_size) +
                " differs from the model's image size " + std::to_string(model_.config.image_size));
  validate(model_.preprocess);
  std::map<std::string, std::string> defaulted = model_.defaulted;
  const PreprocessOverrides& o = options.preprocess;
  if (o.mean) defaulted.erase("mean");
  if (o.std) defaulted.erase("std");
  if (o.crop_pct) defaulted.erase("crop_pct");
  if (o.interpolation) defaulted.erase("interpolation");
  if (!defaulted.empty()) {
    std::string list;
    for (const auto& [key, text] : defaulted) list += (list.empty() ? "" : "; ") + text;
    notices_.push_back("note: " + model_.path + ": " +
                       (model_.has_config_json ? "config.json does not set these, so" : "no config.json beside the weights, so") +
                       " defaults are used: " + list +
                       " (set them in config.json or the YAML config's preprocess/model_options)");
  }
  std::string chosen = options.backend;
  if (chosen == "auto") {
    AutoChoice pick = choose_auto_backend(host_);
    chosen = pick.backend;
    if (!pick.why.empty()) notices_.push_back("note: backend auto: " + pick.why);
  }
  precision_ = options.backend_options.precision;
  threads_ = options.backend_options.threads;
  backends_.push_back(std::make_unique<Backend>(host_.find(chosen), options.backend_options));
  // reference takes whatever the chosen backend declines.
  if (chosen != "reference") {
    BackendOptions fallback = options.backend_options;
    fallback.precision = "fp32";
    fallback.options_json = "{}";
    backends_.push_back(std::make_unique<Backend>(host_.find("reference"), fallback));
  }
  std::vector<Backend*> order;
  for (auto& b : backends_) order.push_back(b.get());
  executor_ = std::make_unique<Executor>(model_, order);
}

Runtime::~Runtime() = default;

std::string Runtime::running() const {
  return backends_.front()->name() + " " + precision_ + ", " + std::to_string(threads_) + " thread" +
         (threads_ == 1 ? "" : "s");
}

AutoChoice choose_auto_backend(PluginHost& host) {
  std::string why;
  if (host.try_find("onednn", &why)) return {"onednn", ""};
  return {"reference", "running on reference (exact, but about 20x slower) because " +
                           (why.find("was rejected") != std::string::npos
                                ? why
                                : std::string("the onednn plugin is not installed (libvitbatch_backend_onednn.so is on "
                                              "no plugin search path)"))};
}

}  // namespace vitbatch
