// classify_run.hpp: the classify loop: paths -> decode -> preprocess -> batch -> executor ->
// top-k -> CSV rows in input order, flushed after every batch. A bad image becomes a row
// with its reason (and a line on stderr); the run goes on.
#pragma once

#include "vitbatch/csv_writer.hpp"
#include "vitbatch/executor.hpp"
#include "vitbatch/input_paths.hpp"

#include <ostream>

namespace vitbatch {

struct ClassifySummary {
  int64_t classified = 0;
  int64_t failed = 0;
};

// Softmax over `classes` logits (in double), then the k most probable, ties to the lower index.
std::vector<Prediction> top_k(const float* logits, int64_t classes, int k);

ClassifySummary classify_inputs(InputPaths& inputs, const Model& model, Executor& executor,
                                CsvWriter& writer, int batch_size, int top_k, std::ostream& diagnostics);

}  // namespace vitbatch
