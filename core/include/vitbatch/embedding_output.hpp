// embedding_output.hpp: what `vitbatch embed` writes into its directory. index.csv has one
// row per input, in input order: `path,shard,row,error`, where a feature lives in
// features-SSSSS.npy (shard S) at row `row` (and its patch tokens, with --tokens, at the same
// row of tokens-SSSSS.npy); a failed input has an empty shard and row and
// its reason. The .npy files are [rows, D] float32 or float16, a new one every shard_rows
// rows. After every batch the .npy is flushed (data, then its header's row count) before the
// index, so the index never names a feature that is not on disk. --resume keeps the index's
// complete rows that have features, truncates the last .npy to the rows they name, deletes
// any later .npy, and appends.
#pragma once

#include "vitbatch/classify_pipeline.hpp"
#include "vitbatch/npy_writer.hpp"
#include "vitbatch/output_sink.hpp"
#include "vitbatch/prediction_format.hpp"

#include <memory>
#include <string>

namespace vitbatch {

class EmbedIndexFormat : public RecordFormat {
 public:
  explicit EmbedIndexFormat(int64_t shard_rows) : shard_rows_(shard_rows) {}
  std::string header() const override { return "path,shard,row,error\n"; }
  // A feature row (shard >= 0) or a failed input (shard < 0, `error` set).
  std::string row(const std::string& path, int64_t shard, int64_t row, const std::string& error) const;
  // RecordedRow::position is shard * shard_rows + row for a row with a feature.
  std::vector<std::pair<std::string, RecordedRow>> parse(const std::string& text, size_t* complete) const override;

 private:
  int64_t shard_rows_;
};

struct EmbedOutputOptions {
  std::string dir;
  int64_t width = 0;  // floats a feature
  NpyDtype dtype = NpyDtype::Float32;
  int64_t shard_rows = 65536;
  bool normalize = false;  // L2-normalise each feature (in double)
  // --tokens: each output row also holds patch_tokens x token_dim floats after the feature,
  // written to tokens-SSSSS.npy ([rows, patch_tokens, token_dim]) beside features-SSSSS.npy.
  int64_t patch_tokens = 0;
  int64_t token_dim = 0;
};

std::string feature_shard_path(const std::string& dir, int64_t shard);  // DIR/features-00042.npy

class EmbedSink : public RowSink {
 public:
  // Continues after `kept_rows` feature rows (0: a fresh start): the shards before the last
  // must be whole; the last is cut to what the index names and later ones are deleted.
  // Throws Error naming the file that does not fit.
  EmbedSink(const EmbedOutputOptions& options, OutputSink& index, int64_t kept_rows);
  void row(const std::string& path, const float* output, const std::string& error, const std::string& thumbnail) override;
  bool flush() override;
  // The failure that made flush() return false: "FILE: reason".
  std::string error() const;
  int64_t rows() const { return rows_; }

 private:
  // One series of .npy files (features, tokens): its rows' shape and where they sit in a row
  // of the model's output.
  struct Series {
    std::string kind;
    std::vector<int64_t> row_shape;
    int64_t offset = 0, floats = 0;
    std::unique_ptr<NpyWriter> writer;
  };
  EmbedOutputOptions options_;
  EmbedIndexFormat format_;
  OutputSink& index_;
  std::vector<Series> series_;
  int64_t shard_index_ = 0;
  int64_t rows_ = 0;  // feature rows over all shards
  std::vector<float> scratch_;
};

}  // namespace vitbatch
