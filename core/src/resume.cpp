#include "vitbatch/resume.hpp"

#include "vitbatch/error.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace vitbatch {

ResumeState prepare_resume(const std::string& path, const PredictionFormat& format) {
  ResumeState state;
  std::ifstream in(path, std::ios::binary);
  if (!in) return state;  // nothing to resume from
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  if (text.empty()) return state;

  size_t complete = 0;
  std::vector<std::pair<std::string, RecordedRow>> rows;
  try {
    rows = format.parse(text, &complete);
  } catch (const Error& e) {
    throw Error(path + ": cannot resume: " + e.what());
  }
  state.repaired_tail = complete < text.size();
  std::string kept = format.header();
  state.has_header = true;
  for (const auto& [raw, row] : rows) {
    if (!row.has_prediction) {
      ++state.dropped_errors;
      continue;
    }
    if (!state.done.insert(row.path).second) continue;  // keep one row per path
    kept += raw;
  }
  std::string tmp = path + ".vitbatch-resume.tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << kept;
    out.flush();
    if (!out) throw Error(tmp + ": cannot write: " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw Error(path + ": cannot replace with the repaired file: " + std::strerror(errno));
  return state;
}

}  // namespace vitbatch
