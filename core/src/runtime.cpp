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
                  "--int8-scales FILE (or put FILE there); or pass --int8-dynamic to quantise each model call by "
                  "its own range (slower; with --lanes 1 answers then depend on the batch)");
    }
  } else if (!options.int8_scales.empty()) {
    notices_.push_back("note: int8 scales " + options.int8_scales + " are not used at precision " + precision_);
  }
  threads_ = options.backend_options.threads;
  if (options.lanes < 0) throw Error("lanes must be 0 (one per thread) or more, got " + std::to_string(options.lanes));
  if (options.lanes > threads_)
    throw Error("lanes (" + std::to_string(options.lanes) + ") cannot be more than threads (" + std::to_string(threads_) +
                "): each lane runs on threads of its own");
  const bool fallback = std::find(chosen.begin(), chosen.end(), "reference") == chosen.end();
  if (fallback) chosen.push_back("reference");
  // One set of contexts per lane, in the same order; the reference fallback runs fp32.
  auto make_backends = [&](int threads) {
    std::vector<std::unique_ptr<Backend>> made;
    for (size_t i = 0; i < chosen.size(); ++i) {
      const std::string& name = chosen[i];
      BackendOptions o = options.backend_options;
      if (fallback && i + 1 == chosen.size()) {
        o.precision = "fp32";
        o.options_json = "{}";
      }
      o.threads = threads;
      o.options = flatten_options(o.options_json);
      made.push_back(std::make_unique<Backend>(host_.find(name), o));
    }
    return made;
  };
  auto pointers = [](const std::vector<std::unique_ptr<Backend>>& owned) {
    std::vector<Backend*> order;
    for (auto& b : owned) order.push_back(b.get());
    return order;
  };
  backends_ = make_backends(threads_);
  executor_ = std::make_unique<Executor>(model_, pointers(backends_));

  std::string not_concurrent;
  for (auto& b : backends_)
    if (!b->concurrent_contexts() && not_concurrent.empty()) not_concurrent = b->name();
  const int count = options.lanes == 0 ? (not_concurrent.empty() ? threads_ : 1) : options.lanes;
  if (count > 1 && !not_concurrent.empty())
    throw Error("lanes " + std::to_string(count) + ": backend '" + not_concurrent +
                "' cannot run images side by side (set lanes to 1, or leave it to the default)");
  if (count > 1) {
    std::vector<std::vector<Backend*>> lanes;
    for (int lane = 0; lane < count; ++lane) {
      // The threads shared out, the first lanes taking one more where they do not divide.
      lane_backends_.push_back(make_backends(threads_ / count + (lane < threads_ % count ? 1 : 0)));
      lanes.push_back(pointers(lane_backends_.back()));
    }
    executor_->set_lanes(lanes);
  }
}

Runtime::~Runtime() = default;

std::string Runtime::running() const {
  return backends_.front()->name() + " " + precision_ + (int8_source_.empty() ? "" : " (" + int8_source_ + ")") +
         ", " + std::to_string(threads_) + " thread" + (threads_ == 1 ? "" : "s") +
         (executor_->lanes() > 1 ? ", " + std::to_string(executor_->lanes()) + " lanes" : "");
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
