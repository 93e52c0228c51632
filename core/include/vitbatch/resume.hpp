// resume.hpp: --resume. Reads an earlier run's output, keeps its complete prediction rows,
// drops its error rows (those inputs are tried again) and a last row cut short by a kill,
// rewrites the file with what it keeps (through a temporary file and rename, so a second
// crash cannot lose it), and says which paths are done.
#pragma once

#include "vitbatch/prediction_format.hpp"

#include <string>
#include <unordered_set>

namespace vitbatch {

struct ResumeState {
  std::unordered_set<std::string> done;  // paths that already have a prediction
  bool has_header = false;               // the kept file starts with the header
  size_t dropped_errors = 0;
  bool repaired_tail = false;            // a torn last row was removed
};

// A missing or empty file is a fresh start. Throws Error naming the file when it is not an
// output of this format (header mismatch) or cannot be rewritten.
ResumeState prepare_resume(const std::string& path, const PredictionFormat& format);

}  // namespace vitbatch
