// merge.hpp: `vitbatch merge`: the outputs of a sharded run (CSV or JSON Lines, as classify
// writes them) joined into one file, rows in byte order of their paths. A directory walk gives
// exactly that order, so the shards of one directory run merge into the unsharded output byte
// for byte, error rows included. Refused, naming the file and path: files of different formats
// or headers (another --top-k), a row cut short (a shard still running or killed: finish it
// with --resume), a path twice, and, when the run's inputs are given, a path missing or one
// that the inputs do not hold.
#pragma once

#include <string>
#include <vector>

namespace vitbatch {

struct MergeInput {
  std::vector<std::string> files;   // the shard outputs
  std::vector<std::string> inputs;  // the run's inputs (files, directories), walked as classify
                                    // walks them; empty: no completeness check
};

struct MergeResult {
  std::string text;  // the merged file
  size_t rows = 0;
};

// Throws Error with the first problem found.
MergeResult merge_outputs(const MergeInput& input);

}  // namespace vitbatch
