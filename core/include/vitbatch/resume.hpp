// resume.hpp: --resume, and the lock every run holds on its output file.
//
// prepare_resume reads an earlier run's output, keeps its complete prediction rows, drops
// its error rows (those inputs are tried again), duplicates and a last row cut short by a
// kill, and says which paths are done. When something had to be dropped it rewrites the
// file through a temporary file and rename (so a second crash cannot lose it), keeping the
// file's mode and owner and, for a symlinked output, the link (the target is rewritten);
// otherwise the file is left as it is and rows are appended. A read-only output is refused.
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
  bool rewritten = false;                // the file was rewritten (something was dropped)
  int64_t last_position = -1;            // the largest RecordedRow::position kept (embed)
};

// A missing or empty file is a fresh start. Throws Error naming the file when it is not an
// output of this format (header mismatch), is read-only, or cannot be rewritten.
ResumeState prepare_resume(const std::string& path, const RecordFormat& format);

// An exclusive lock on OUTPUT.lock (flock), held while the object lives, so that two runs
// never write one output: a second writer (concurrent --resume, or the same -o twice) is
// refused with the first one's pid instead of silently losing rows.
class OutputLock {
 public:
  explicit OutputLock(const std::string& output);  // throws Error when held elsewhere
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace vitbatch
