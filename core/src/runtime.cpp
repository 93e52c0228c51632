#include "vitbatch/runtime.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/preprocess.hpp"

namespace vitbatch {

Runtime::Runtime(const RuntimeOptions& options)
    : model_(load_model(options.model, options.model_options)),
      host_(plugin_search_path(options.plugin_dirs_flag, options.plugin_dirs_config)) {
  options.preprocess.apply(model_.preprocess);
  if (model_.preprocess.input_size != model_.config.image_size)
    throw Error("preprocess input_size " + std::to_string(model_.preprocess.input_size) +
                " differs from the model's image size " + std::to_string(model_.config.image_size));
  validate(model_.preprocess);
  std::string chosen = options.backend;
  if (chosen == "auto") {
    chosen = "reference";
    for (const PluginInfo& p : host_.plugins())
      if (p.rejected.empty() && p.name == "onednn") chosen = "onednn";
  }
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

}  // namespace vitbatch
