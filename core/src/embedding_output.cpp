#include "vitbatch/embedding_output.hpp"

#include "vitbatch/error.hpp"

#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace vitbatch {

namespace {

bool parse_count(const std::string& text, int64_t* out) {
  if (text.empty() || text.size() > 18) return false;
  for (char c : text)
    if (c < '0' || c > '9') return false;
  *out = std::strtoll(text.c_str(), nullptr, 10);
  return true;
}

}  // namespace

std::string EmbedIndexFormat::row(const std::string& path, int64_t shard, int64_t row, const std::string& error) const {
  if (shard < 0) return csv_field(path) + ",,," + csv_field(error) + "\n";
  return csv_field(path) + "," + std::to_string(shard) + "," + std::to_string(row) + ",\n";
}

std::vector<std::pair<std::string, RecordedRow>> EmbedIndexFormat::parse(const std::string& text, size_t* complete) const {
  std::vector<std::pair<std::string, RecordedRow>> rows;
  *complete = 0;
  size_t pos = 0;
  std::vector<std::string> fields;
  bool first = true;
  while (pos < text.size()) {
    const size_t next = split_csv_record(text, pos, fields);
    if (next == std::string::npos) break;  // cut short by a kill
    std::string raw = text.substr(pos, next - pos);
    if (first) {
      if (raw != header()) throw Error("its header is not embed's index header (path,shard,row,error)");
      first = false;
    } else {
      if (fields.size() != 4) break;  // a torn record
      RecordedRow r{fields[0], fields[3].empty()};
      int64_t shard = 0, row = 0;
      if (r.has_prediction) {
        if (!parse_count(fields[1], &shard) || !parse_count(fields[2], &row) || row >= shard_rows_) break;
        r.position = shard * shard_rows_ + row;
      }
      rows.push_back({std::move(raw), std::move(r)});
    }
    pos = next;
    *complete = pos;
  }
  return rows;
}

std::string shard_path(const std::string& dir, const std::string& kind, int64_t shard) {
  char name[32];
  std::snprintf(name, sizeof name, "-%05lld.npy", static_cast<long long>(shard));
  return dir + "/" + kind + name;
}

std::string feature_shard_path(const std::string& dir, int64_t shard) { return shard_path(dir, "features", shard); }

EmbedSink::EmbedSink(const EmbedOutputOptions& options, OutputSink& index, int64_t kept_rows)
    : options_(options), format_(options.shard_rows), index_(index) {
  series_.push_back({"features", {options_.width}, 0, options_.width, nullptr});
  if (options_.patch_tokens > 0)
    series_.push_back({"tokens", {options_.patch_tokens, options_.token_dim}, options_.width,
                       options_.patch_tokens * options_.token_dim, nullptr});
  shard_index_ = kept_rows / options_.shard_rows;
  const int64_t in_last = kept_rows % options_.shard_rows;
  for (Series& series : series_) {
    for (int64_t s = 0; s < shard_index_; ++s) {  // every shard before the last is whole
      const std::string path = shard_path(options_.dir, series.kind, s);
      if (NpyWriter::count_rows(path, series.row_shape, options_.dtype) != options_.shard_rows)
        throw Error(path + ": does not hold the " + std::to_string(options_.shard_rows) + " rows the index names");
    }
    // Shards past the one being continued hold only rows the index never named: delete them.
    if (DIR* d = opendir(options_.dir.c_str())) {
      const std::string prefix = series.kind + "-";
      while (dirent* e = readdir(d)) {
        int64_t s = 0;
        std::string name = e->d_name;
        if (name.size() == prefix.size() + 9 && name.rfind(prefix, 0) == 0 && name.compare(name.size() - 4, 4, ".npy") == 0 &&
            parse_count(name.substr(prefix.size(), 5), &s) && s > shard_index_)
          ::unlink((options_.dir + "/" + name).c_str());
      }
      closedir(d);
    }
    const std::string path = shard_path(options_.dir, series.kind, shard_index_);
    const bool continuing = kept_rows > 0 && ::access(path.c_str(), F_OK) == 0;
    series.writer = std::make_unique<NpyWriter>(path, series.row_shape, options_.dtype, continuing ? in_last : -1);
  }
  rows_ = kept_rows;
  scratch_.resize(static_cast<size_t>(options_.width));
}

void EmbedSink::row(const std::string& path, const float* output, const std::string& error, const std::string&) {
  if (!output) {
    index_.write(format_.row(path, -1, -1, error));
    return;
  }
  if (series_.front().writer->rows() == options_.shard_rows) {  // full: the next shard (the full one is flushed as it closes)
    for (Series& series : series_)
      if (!series.writer->flush()) return;  // flush() reports it
    ++shard_index_;
    for (Series& series : series_)
      series.writer = std::make_unique<NpyWriter>(shard_path(options_.dir, series.kind, shard_index_), series.row_shape,
                                                  options_.dtype);
  }
  index_.write(format_.row(path, shard_index_, series_.front().writer->rows(), ""));
  const float* feature = output;
  if (options_.normalize) {  // the pooled feature only: the tokens are written as they are
    double sum = 0.0;
    for (int64_t i = 0; i < options_.width; ++i) sum += double(output[i]) * output[i];
    const double scale = sum > 0 ? 1.0 / std::sqrt(sum) : 0.0;  // a zero feature stays zero
    for (int64_t i = 0; i < options_.width; ++i) scratch_[i] = static_cast<float>(output[i] * scale);
    feature = scratch_.data();
  }
  series_.front().writer->append(feature, 1);
  for (size_t k = 1; k < series_.size(); ++k) series_[k].writer->append(output + series_[k].offset, 1);
  ++rows_;
}

bool EmbedSink::flush() {
  for (Series& series : series_)
    if (!series.writer->flush()) return false;  // the features before the index that names them
  return index_.flush();
}

std::string EmbedSink::error() const {
  for (const Series& series : series_)
    if (!series.writer->error().empty()) return series.writer->path() + ": " + series.writer->error();
  return index_.name() + ": " + index_.error();
}

}  // namespace vitbatch
