#include "vitbatch/run_config.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/file_io.hpp"
#include "vitbatch/limits.hpp"

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace vitbatch {

void PreprocessOverrides::apply(PreprocessConfig& c) const {
  if (input_size) c.input_size = *input_size;
  if (crop_pct) c.crop_pct = *crop_pct;
  if (interpolation) c.interpolation = *interpolation;
  if (mean) c.mean = *mean;
  if (std) c.std = *std;
}

namespace {

class ConfigReader {
 public:
  ConfigReader(std::string label, std::string base_dir) : label_(std::move(label)), base_(std::move(base_dir)) {}

  [[noreturn]] void fail(const YAML::Node& node, const std::string& key, const std::string& why) const {
    std::string line = node.Mark().line >= 0 ? ":" + std::to_string(node.Mark().line + 1) : "";
    throw Error(label_ + line + ": '" + key + "': " + why);
  }

  void expect_map(const YAML::Node& node, const std::string& key, const std::set<std::string>& allowed) const {
    if (!node.IsMap()) fail(node, key, "expected a mapping");
    std::set<std::string> seen;
    for (const auto& kv : node) {
      std::string k = kv.first.Scalar();
      // YAML parsers disagree on a repeated key (yaml-cpp keeps the first): refuse it.
      if (!seen.insert(k).second) fail(kv.first, key.empty() ? k : key + "." + k, "key given twice");
      if (!allowed.count(k)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        fail(kv.first, key.empty() ? k : key + "." + k, "unknown key (expected one of: " + list + ")");
      }
    }
  }

  template <class T>
  T scalar(const YAML::Node& node, const std::string& key, const char* what) const {
    if (!node.IsScalar()) fail(node, key, std::string("expected ") + what);
    try {
      return node.as<T>();
    } catch (const YAML::Exception&) {
      fail(node, key, std::string("expected ") + what + ", got '" + node.Scalar() + "'");
    }
  }

  // An integer in [lo, hi]; read as 64-bit so that 2147483648 is out of range, not garbage.
  int bounded_int(const YAML::Node& node, const std::string& key, int lo, int hi) const {
    std::string range = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
    long long v = scalar<long long>(node, key, range.c_str());
    if (v < lo || v > hi) fail(node, key, "expected " + range + ", got " + node.Scalar());
    return static_cast<int>(v);
  }

  std::string path(const YAML::Node& node, const std::string& key) const {
    std::string p = scalar<std::string>(node, key, "a path");
    return fs::path(p).is_absolute() || base_.empty() ? p : (fs::path(base_) / p).string();
  }

  std::array<float, 3> triple(const YAML::Node& node, const std::string& key) const {
    if (!node.IsSequence() || node.size() != 3) fail(node, key, "expected a list of 3 numbers");
    std::array<float, 3> out{};
    for (size_t i = 0; i < 3; ++i) {
      double v = scalar<double>(node[i], key, "a number");
      if (!std::isfinite(v) || std::fabs(v) > 1e6) fail(node[i], key, "expected a finite number within +-1e6, got " + node[i].Scalar());
      out[i] = static_cast<float>(v);
    }
    return out;
  }

  std::string one_of(const YAML::Node& node, const std::string& key, const std::set<std::string>& values) const {
    std::string v = scalar<std::string>(node, key, "a string");
    if (!values.count(v)) {
      std::string list;
      for (const auto& a : values) list += (list.empty() ? "" : ", ") + a;
      fail(node, key, "'" + v + "' is not one of: " + list);
    }
    return v;
  }

  // Aliases make a YAML graph, not a tree: a few hundred bytes of "&a [*b, *b, ...]" expand
  // to billions of nodes. Expansion is bounded in nodes and depth.
  static constexpr int kMaxNodes = 10000, kMaxDepth = 32;

  nlohmann::json to_json(const YAML::Node& node, const std::string& key, int depth, int& nodes) const {
    if (++nodes > kMaxNodes) fail(node, key, "more than " + std::to_string(kMaxNodes) + " values (an alias bomb?)");
    if (depth > kMaxDepth) fail(node, key, "nested deeper than " + std::to_string(kMaxDepth) + " levels");
    if (node.IsMap()) {
      nlohmann::json j = nlohmann::json::object();
      for (const auto& kv : node) {
        std::string k = kv.first.Scalar();
        if (j.contains(k)) fail(kv.first, key + "." + k, "key given twice");
        j[k] = to_json(kv.second, key + "." + k, depth + 1, nodes);
      }
      return j;
    }
    if (node.IsSequence()) {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& v : node) j.push_back(to_json(v, key, depth + 1, nodes));
      return j;
    }
    if (node.IsNull()) return nullptr;
    const std::string& s = node.Scalar();
    if (node.Tag() != "!") {  // unquoted: keep numbers and booleans typed
      try {
        size_t used = 0;
        long long i = std::stoll(s, &used);
        if (used == s.size()) return i;
        double d = std::stod(s, &used);
        if (used == s.size()) return d;
      } catch (const std::exception&) {
      }
      if (s == "true" || s == "false") return s == "true";
    }
    return s;
  }

  // A list of backend names, kept as "cuda,onednn" (the form --backend takes).
  std::string backend_list(const YAML::Node& node, const std::string& key) const {
    if (node.size() == 0) fail(node, key, "the list of backends is empty");
    std::string joined;
    for (const YAML::Node& item : node) {
      std::string name = scalar<std::string>(item, key, "a backend name");
      if (name.empty() || name.find(',') != std::string::npos) fail(item, key, "'" + name + "' is not a backend name");
      joined += (joined.empty() ? "" : ",") + name;
    }
    return joined;
  }

  RunConfig read(const YAML::Node& root) const {
    RunConfig c;
    if (root.IsNull()) return c;
    expect_map(root, "", {"model", "model_options", "preprocess", "backend", "backends", "batch_size", "top_k",
                          "labels", "output", "plugin_dirs"});
    if (auto n = root["model"]) c.model = path(n, "model");
    if (auto m = root["model_options"]) {
      expect_map(m, "model_options", {"heads", "layer_norm_eps", "image_size"});
      if (auto n = m["image_size"]) {
        if (n.IsScalar() && n.Scalar() == "test") c.model_options.test_input_size = true;
        else c.model_options.image_size = bounded_int(n, "model_options.image_size", 1, kMaxInputSize);
      }
      if (auto n = m["heads"]) c.model_options.heads = bounded_int(n, "model_options.heads", 1, kMaxHeads);
      if (auto n = m["layer_norm_eps"]) {
        double eps = scalar<double>(n, "model_options.layer_norm_eps", "a number");
        if (!(eps > 0 && eps < 1)) fail(n, "model_options.layer_norm_eps", "must be in (0, 1)");
        c.model_options.layer_norm_eps = eps;
      }
    }
    if (auto p = root["preprocess"]) {
      expect_map(p, "preprocess", {"input_size", "crop_pct", "interpolation", "mean", "std"});
      if (auto n = p["input_size"]) c.preprocess.input_size = bounded_int(n, "preprocess.input_size", 1, kMaxInputSize);
      if (auto n = p["crop_pct"]) {
        double v = scalar<double>(n, "preprocess.crop_pct", "a number");
        if (!(v >= 0.1 && v <= 4)) fail(n, "preprocess.crop_pct", "must be in [0.1, 4]");
        c.preprocess.crop_pct = v;
      }
      if (auto n = p["interpolation"])
        c.preprocess.interpolation = one_of(n, "preprocess.interpolation", {"bicubic", "bilinear", "lanczos", "box", "hamming"});
      if (auto n = p["mean"]) c.preprocess.mean = triple(n, "preprocess.mean");
      if (auto n = p["std"]) {
        c.preprocess.std = triple(n, "preprocess.std");
        for (float s : *c.preprocess.std)
          if (std::fabs(s) < 1e-6f) fail(n, "preprocess.std", "values must be at least 1e-6 in magnitude");
      }
    }
    if (auto b = root["backend"]) {
      if (b.IsScalar()) {
        c.backend = scalar<std::string>(b, "backend", "a backend name");
      } else {
        expect_map(b, "backend", {"name", "threads", "lanes", "precision", "options", "int8_scales", "int8_dynamic"});
        if (auto n = b["int8_scales"]) c.int8_scales = path(n, "backend.int8_scales");
        if (auto n = b["int8_dynamic"]) c.int8_dynamic = scalar<bool>(n, "backend.int8_dynamic", "true or false");
        if (auto n = b["name"]) c.backend = n.IsSequence() ? backend_list(n, "backend.name")
                                                           : scalar<std::string>(n, "backend.name", "a backend name");
        if (auto n = b["threads"]) c.threads = bounded_int(n, "backend.threads", 1, kMaxThreads);
        if (auto n = b["lanes"]) c.lanes = bounded_int(n, "backend.lanes", 1, kMaxThreads);
        if (auto n = b["precision"]) c.precision = one_of(n, "backend.precision", {"fp32", "bf16", "fp16", "int8"});
        if (auto n = b["options"]) {
          if (!n.IsMap()) fail(n, "backend.options", "expected a mapping");
          int nodes = 0;
          try {
            c.backend_options_json = to_json(n, "backend.options", 0, nodes).dump();
          } catch (const nlohmann::json::exception&) {  // JSON text must be UTF-8
            fail(n, "backend.options", "holds text that is not valid UTF-8");
          }
        }
      }
    }
    // `backends: [cuda, onednn]`: nodes go to the first that accepts them, reference last.
    if (auto n = root["backends"]) {
      if (c.backend) fail(n, "backends", "give the backends either here or as backend.name, not both");
      if (!n.IsSequence()) fail(n, "backends", "expected a list of backend names");
      c.backend = backend_list(n, "backends");
    }
    if (auto n = root["batch_size"]) c.batch_size = bounded_int(n, "batch_size", 1, kMaxBatchSize);
    if (auto n = root["top_k"]) c.top_k = bounded_int(n, "top_k", 1, kMaxTopK);
    if (auto n = root["labels"]) c.labels = path(n, "labels");
    if (auto n = root["output"]) {
      std::string o = scalar<std::string>(n, "output", "a path or -");
      c.output = o == "-" ? o : path(n, "output");
    }
    if (auto n = root["plugin_dirs"]) {
      if (!n.IsSequence()) fail(n, "plugin_dirs", "expected a list of directories");
      for (const auto& d : n) c.plugin_dirs.push_back(path(d, "plugin_dirs"));
    }
    return c;
  }

 private:
  std::string label_, base_;
};

}  // namespace

RunConfig parse_run_config(const std::string& yaml, const std::string& label, const std::string& base_dir) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::ParserException& e) {
    throw Error(label + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  return ConfigReader(label, base_dir).read(root);
}

RunConfig load_run_config(const std::string& path) {
  std::error_code ec;
  // An ifstream opens a directory and reads nothing: that must not pass as an empty config.
  if (fs::is_directory(path, ec)) throw Error(path + ": is a directory, not a YAML config file");
  if (fs::symlink_status(path, ec).type() == fs::file_type::not_found) throw Error(path + ": no such config file");
  return parse_run_config(read_regular_file(path, uint64_t{1} << 20), path, fs::path(path).parent_path().string());
}

}  // namespace vitbatch
