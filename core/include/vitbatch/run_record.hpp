// run_record.hpp: the sidecar FILE.meta.json written beside every --output FILE. It records
// what produced the rows (model, backend, precision, format, top-k, the directory relative
// paths were written from), so that --resume refuses to append rows of another model or
// precision to them, and can match the paths it finds there whatever directory it runs in.
#pragma once

#include <optional>
#include <string>

namespace vitbatch {

struct RunRecord {
  std::string vitbatch_version;
  std::string model;       // the weights file, absolute
  int64_t model_bytes = 0;  // its size: a different file at the same path is another model
  std::string backend;     // the backend that ran the model ("auto" resolved)
  std::string precision;
  std::string format;      // csv or jsonl
  int top_k = 0;
  std::string activation = "softmax";  // --activation
  double min_prob = 0.0;                // --min-prob (0: every prediction kept)
  std::string cwd;         // relative paths in the rows are relative to this
  bool absolute_paths = false;
};

std::string run_record_path(const std::string& output);  // output + ".meta.json"
// Nothing when the file does not exist; throws Error naming it when it is unreadable/bad.
std::optional<RunRecord> read_run_record(const std::string& path);
// Through a temporary file and rename. Throws Error naming the file.
void write_run_record(const std::string& path, const RunRecord& record);
// "" when rows of `now` may be appended to rows of `before`, else what differs, in words.
std::string run_record_mismatch(const RunRecord& before, const RunRecord& now);

}  // namespace vitbatch
