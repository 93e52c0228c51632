#include "vitbatch/run_record.hpp"

#include "json_integer.hpp"
#include "vitbatch/error.hpp"
#include "vitbatch/limits.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace vitbatch {

std::string run_record_path(const std::string& output) { return output + ".meta.json"; }

std::optional<RunRecord> read_run_record(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  try {
    nlohmann::json j = nlohmann::json::parse(in);
    RunRecord r;
    r.vitbatch_version = j.value("vitbatch", "");
    r.model = j.at("model").get<std::string>();
    r.model_bytes = j.contains("model_bytes") ? json_integer(j["model_bytes"], "model_bytes") : 0;
    r.backend = j.at("backend").get<std::string>();
    r.precision = j.at("precision").get<std::string>();
    r.format = j.value("format", "");
    const int64_t top_k = j.contains("top_k") ? json_integer(j["top_k"], "top_k") : 0;
    if (top_k < 0 || top_k > kMaxTopK) throw Error("top_k " + std::to_string(top_k) + " is out of range");
    r.top_k = static_cast<int>(top_k);
    r.activation = j.value("activation", "softmax");  // records from before --activation
    r.min_prob = j.value("min_prob", 0.0);
    r.cwd = j.value("cwd", "");
    r.absolute_paths = j.value("absolute_paths", false);
    return r;
  } catch (const std::exception& e) {  // nlohmann's exceptions and json_integer's Error
    throw Error(path + ": not a vitbatch run record: " + e.what());
  }
}

void write_run_record(const std::string& path, const RunRecord& r) {
  nlohmann::json j = {{"vitbatch", r.vitbatch_version}, {"model", r.model},     {"model_bytes", r.model_bytes},
                      {"backend", r.backend},           {"precision", r.precision}, {"format", r.format},
                      {"top_k", r.top_k},               {"activation", r.activation}, {"min_prob", r.min_prob},
                      {"cwd", r.cwd},                   {"absolute_paths", r.absolute_paths}};
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    out.flush();
    if (!out) throw Error(tmp + ": cannot write: " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error(path + ": cannot write: " + std::strerror(errno));
}

namespace {
// What a string reads back as from the record (bytes that are not UTF-8 become U+FFFD).
std::string as_recorded(const std::string& s) {
  return nlohmann::json::parse(nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
      .get<std::string>();
}
}  // namespace

std::string run_record_mismatch(const RunRecord& before, const RunRecord& given) {
  RunRecord now = given;
  now.model = as_recorded(now.model);
  std::string diff;
  auto add = [&](const std::string& what, const std::string& a, const std::string& b) {
    if (a != b) diff += (diff.empty() ? "" : "; ") + what + " " + a + " then, " + b + " now";
  };
  add("model", before.model, now.model);
  if (before.model == now.model && before.model_bytes != now.model_bytes)
    diff += (diff.empty() ? "" : "; ") + std::string("the model file changed size");
  add("backend", before.backend, now.backend);
  add("precision", before.precision, now.precision);
  add("format", before.format, now.format);
  add("top-k", std::to_string(before.top_k), std::to_string(now.top_k));
  add("activation", before.activation, now.activation);
  if (before.min_prob != now.min_prob) {
    char a[32], b[32];
    std::snprintf(a, sizeof a, "%g", before.min_prob);
    std::snprintf(b, sizeof b, "%g", now.min_prob);
    add("--min-prob", a, b);
  }
  add("--absolute-paths", before.absolute_paths ? "on" : "off", now.absolute_paths ? "on" : "off");
  return diff;
}

}  // namespace vitbatch
