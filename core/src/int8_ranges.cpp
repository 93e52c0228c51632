#include "vitbatch/int8_ranges.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/file_io.hpp"
#include "vitbatch/safetensors.hpp"
#include "vitbatch/vit_graph.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

namespace vitbatch {
namespace {

constexpr size_t kBins = 2048;  // even, so that doubling the range merges bin pairs
constexpr const char* kFormat = "vitbatch-int8-ranges";
const std::string kSmoothPrefix = "smoothquant/";  // no linear's name holds a '/'

}  // namespace

RangeCollector::RangeCollector(CalibrationMethod method) : method_(std::move(method)) {
  if (method_.name != "minmax" && method_.name != "percentile")
    throw Error("unknown calibration method '" + method_.name + "' (minmax, percentile)");
  if (method_.name == "percentile" && !(method_.percentile > 50 && method_.percentile <= 100))
    throw Error("calibration percentile must be in (50, 100]");
}

void RangeCollector::observe(const std::string& name, const float* x, int64_t count) {
  if (count <= 0) return;
  float lo = x[0], hi = x[0];
  for (int64_t i = 0; i < count; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (!std::isfinite(lo) || !std::isfinite(hi))
    throw Error("the input of '" + name + "' holds a value that is not finite; these images cannot calibrate it");
  Stats& s = stats_[name];
  if (s.count == 0) {
    s.min = lo, s.max = hi;
    s.half_width = std::exp2(std::ceil(std::log2(std::max({std::fabs(lo), std::fabs(hi), 1e-6f}) * 1.0001)));
    s.bins.assign(kBins, 0);
  }
  s.min = std::min<double>(s.min, lo);
  s.max = std::max<double>(s.max, hi);
  while (std::max(std::fabs(s.min), std::fabs(s.max)) >= s.half_width) {
    std::vector<uint64_t> merged(kBins, 0);  // old bin i lies inside new bin kBins/4 + i/2
    for (size_t i = 0; i < kBins; ++i) merged[kBins / 4 + i / 2] += s.bins[i];
    s.bins.swap(merged);
    s.half_width *= 2;
  }
  const double per_unit = kBins / (2 * s.half_width);
  for (int64_t i = 0; i < count; ++i) {
    auto b = static_cast<int64_t>((x[i] + s.half_width) * per_unit);
    ++s.bins[static_cast<size_t>(std::clamp<int64_t>(b, 0, kBins - 1))];
  }
  s.count += static_cast<uint64_t>(count);
}

Int8Ranges RangeCollector::ranges() const {
  Int8Ranges out;
  for (const auto& [name, s] : stats_) {
    double lo = s.min, hi = s.max;
    if (method_.name == "percentile" && method_.percentile < 100) {
      // The values below the (100 - p)th and above the pth percentile are clipped: a bin edge
      // at that count, never beyond the values actually seen.
      const double tail = s.count * (100 - method_.percentile) / 100, width = 2 * s.half_width / kBins;
      double seen = 0;
      for (size_t b = 0; b < kBins; ++b)
        if ((seen += s.bins[b]) > tail) {
          lo = std::max(s.min, -s.half_width + b * width);
          break;
        }
      seen = 0;
      for (size_t b = kBins; b-- > 0;)
        if ((seen += s.bins[b]) > tail) {
          hi = std::min(s.max, -s.half_width + (b + 1) * width);
          break;
        }
    }
    out[name] = {static_cast<float>(lo), static_cast<float>(hi)};
  }
  return out;
}

std::vector<std::string> quantized_linear_names(const Model& model) {
  Graph g = lower_composites(build_vit_graph(model, 1), [](const Graph&, const Node&) { return false; });
  std::vector<std::string> names;
  for (const Node& n : g.nodes())
    if (n.op == Op::LINEAR) names.push_back(n.name);
  return names;
}

size_t keep_float(Int8Ranges& ranges, const std::vector<std::string>& suffixes) {
  size_t marked = 0;
  for (const std::string& suffix : suffixes) {
    size_t matched = 0;
    for (auto& [name, r] : ranges)
      if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
          (name.size() == suffix.size() || name[name.size() - suffix.size() - 1] == '.')) {
        matched += 1;
        if (!r.keep_float) r.keep_float = true, ++marked;
      }
    if (!matched) throw Error("no linear of this model is named '" + suffix + "' or ends with '." + suffix + "'");
  }
  return marked;
}

void save_int8_ranges(const std::string& path, const Int8Ranges& ranges,
                      const std::map<std::string, std::string>& metadata, const Smoothing& smoothing) {
  nlohmann::json header = nlohmann::json::object();
  nlohmann::json meta(metadata);
  meta["format"] = kFormat;
  std::string kept;
  for (const auto& [name, r] : ranges)
    if (r.keep_float) kept += (kept.empty() ? "" : ",") + name;
  meta["keep_float"] = kept;
  header["__metadata__"] = meta;
  std::string data;
  for (const auto& [name, r] : ranges) {
    float pair[2] = {r.lo, r.hi};
    header[name] = {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {data.size(), data.size() + sizeof pair}}};
    data.append(reinterpret_cast<const char*>(pair), sizeof pair);
  }
  for (const auto& [norm, c] : smoothing) {
    const size_t bytes = c.size() * sizeof(float);
    header[kSmoothPrefix + norm] = {{"dtype", "F32"}, {"shape", {c.size()}}, {"data_offsets", {data.size(), data.size() + bytes}}};
    data.append(reinterpret_cast<const char*>(c.data()), bytes);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string file(8, '\0');
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  write_file_atomically(path, file + text + data);
}

void load_int8_ranges(const std::string& path, Model& model) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw Error(path + ": no such int8 ranges file (make it with `vitbatch calibrate --model M IMAGES... -o " + path + "`)");
  SafetensorsFile f = SafetensorsFile::open(path);
  auto format = f.metadata().find("format");
  if (format == f.metadata().end() || format->second != kFormat)
    throw Error(path + ": not an int8 ranges file (no __metadata__ format '" + std::string(kFormat) +
                "'; make one with `vitbatch calibrate`)");
  Int8Ranges ranges;
  Smoothing smoothing;
  for (const auto& [name, t] : f.tensors()) {
    if (name.compare(0, kSmoothPrefix.size(), kSmoothPrefix) == 0) {
      if (t.dtype != "F32" || t.shape.size() != 1)
        throw Error(path + ": tensor '" + name + "' is " + t.dtype + " " + shape_string(t.shape) + ", expected F32 [channels]");
      std::vector<float> c(static_cast<size_t>(t.shape[0]));
      std::memcpy(c.data(), t.data, c.size() * sizeof(float));
      smoothing[name.substr(kSmoothPrefix.size())] = std::move(c);
      continue;
    }
    if (t.dtype != "F32" || t.shape != Shape{2})
      throw Error(path + ": tensor '" + name + "' is " + t.dtype + " " + shape_string(t.shape) + ", expected F32 [2]");
    float pair[2];
    std::memcpy(pair, t.data, sizeof pair);
    if (!std::isfinite(pair[0]) || !std::isfinite(pair[1]) || pair[0] > pair[1])
      throw Error(path + ": the range of '" + name + "' is not a finite lo <= hi");
    ranges[name] = {pair[0], pair[1]};
  }
  if (auto kept = f.metadata().find("keep_float"); kept != f.metadata().end()) {
    const std::string& list = kept->second;
    for (size_t start = 0; start < list.size();) {
      size_t end = std::min(list.find(',', start), list.size());
      std::string name = list.substr(start, end - start);
      auto it = ranges.find(name);
      if (it == ranges.end()) throw Error(path + ": keep_float names '" + name + "', which has no range");
      it->second.keep_float = true;
      start = end + 1;
    }
  }
  std::vector<std::string> names = quantized_linear_names(model);
  for (const std::string& name : names)
    if (!ranges.count(name))
      throw Error(path + ": no range for linear '" + name + "' (made for another model? run `vitbatch calibrate` again)");
  std::set<std::string> known(names.begin(), names.end());
  for (const auto& [name, r] : ranges)
    if (!known.count(name))
      throw Error(path + ": range for '" + name + "', which this model does not have (made for another model?)");
  try {
    fold_smoothing(model, smoothing);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  model.int8_ranges = std::move(ranges);
}

std::string default_int8_ranges_path(const std::string& weights_path) {
  return (std::filesystem::path(weights_path).parent_path() / "int8_scales.safetensors").string();
}

std::string find_int8_ranges(const std::string& weights_path, const std::string& given) {
  if (!given.empty()) return given;
  std::error_code ec;
  std::string path = default_int8_ranges_path(weights_path);
  return std::filesystem::exists(path, ec) ? path : "";
}

}  // namespace vitbatch
