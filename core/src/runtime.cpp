#include "vitbatch/runtime.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/int8_ranges.hpp"
#include "vitbatch/preprocess.hpp"

#include <algorithm>
#include <map>

namespace vitbatch {

Runtime::Runtime(const RuntimeOptions& options)
    : model_(load_model(options.model, options.model_options)),
      host_(plugin_search_path(options.plugin_dirs_flag, options.plugin_dirs_config)) {
  options.preprocess.apply(model_.preprocess);
  if (options.features) {  // the graph then ends at the pooled, normalised feature
    model_.config.num_classes = 0;
    model_.labels.clear();
    model_.config.output_patch_tokens = options.patch_tokens;
  }
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
  // "cuda,onednn": nodes go to the first that accepts them; reference takes the rest.
  std::vector<std::string> chosen;
  for (size_t start = 0; start <= options.backend.size();) {
    size_t end = std::min(options.backend.find(',', start), options.backend.size());
    std::string name = options.backend.substr(start, end - start);
    name.erase(0, name.find_first_not_of(" \t"));
    name.erase(name.find_last_not_of(" \t") + 1);
    if (name.empty()) throw Error("backend list '" + options.backend + "' has an empty name");
    if (name == "auto") {
      AutoChoice pick = choose_auto_backend(host_);
      name = pick.backend;
      if (!pick.why.empty()) notices_.push_back("note: backend auto: " + pick.why);
    }
    if (std::find(chosen.begin(), chosen.end(), name) == chosen.end()) chosen.push_back(name);
    start = end + 1;
  }
  precision_ = options.backend_options.precision;
  if (!options.int8_scales.empty() && options.int8_dynamic)
    throw Error("give int8 scales (--int8-scales) or --int8-dynamic, not both");
  if (precision_ == "int8") {
    std::string path = options.int8_dynamic ? "" : find_int8_ranges(model_.path, options.int8_scales);
    if (!path.empty()) {
      load_int8_ranges(path, model_);
      int8_source_ = "ranges " + path;
    } else if (options.int8_dynamic) {
      int8_source_ = "dynamic";
    } else {
      throw Error("int8 needs calibrated activation ranges and " + default_int8_ranges_path(model_.path) +
                  " does not exist: make them with `vitbatch calibrate --model M IMAGES... -o FILE`, then pass "
                  "--int8-scales FILE (or put FILE there); or pass --int8-dynamic to quantise each batch by its "
                  "own range (answers then depend on the batch)");
    }
  } else if (!options.int8_scales.empty()) {
    notices_.push_back("note: int8 scales " + options.int8_scales + " are not used at precision " + precision_);
  }
  threads_ = options.backend_options.threads;
  BackendOptions backend_options = options.backend_options;
  backend_options.options = flatten_options(backend_options.options_json);
  for (const std::string& name : chosen) backends_.push_back(std::make_unique<Backend>(host_.find(name), backend_options));
  if (std::find(chosen.begin(), chosen.end(), "reference") == chosen.end()) {
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
  return backends_.front()->name() + " " + precision_ + (int8_source_.empty() ? "" : " (" + int8_source_ + ")") +
         ", " + std::to_string(threads_) + " thread" +
         (threads_ == 1 ? "" : "s");
}

AutoChoice choose_auto_backend(PluginHost& host) {
  // The usable plugin with the highest score() wins; a plugin that cannot run here (no
  // device) scores 0 and is never picked. Ties go to the earlier one on the search path.
  const PluginInfo* best = nullptr;
  for (const PluginInfo& p : host.plugins())
    if (p.rejected.empty() && p.score > 0 && (!best || p.score > best->score)) best = &p;
  if (!best) throw Error("no usable backend plugin found (not even reference); see `vitbatch backends`");
  if (best->name != "reference") return {best->name, ""};
  // Reference is the yardstick, not a way to run: say why nothing faster was found. The
  // fast CPU backend that ships with vitbatch is the one a user most likely lacks.
  std::string why;
  if (host.try_find("onednn", &why) || why.find("was rejected") != std::string::npos)
    return {"reference", "running on reference (exact, but about 20x slower) because " + why};
  return {"reference", "running on reference (exact, but about 20x slower) because the onednn plugin is not installed "
                       "(libvitbatch_backend_onednn.so is on no plugin search path)"};
}

}  // namespace vitbatch
