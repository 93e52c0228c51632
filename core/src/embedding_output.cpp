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

std::string feature_shard_path(const std::string& dir, int64_t shard) {
  char name[32];
  std::snprintf(name, sizeof name, "features-%05lld.npy", static_cast<long long>(shard));
  return dir + "/" + name;
}

EmbedSink::EmbedSink(const EmbedOutputOptions& options, OutputSink& index, int64_t kept_rows)
    : options_(options), format_(options.shard_rows), index_(index) {
  const std::vector<int64_t> row_shape{options_.width};
  shard_index_ = kept_rows / options_.shard_rows;
  const int64_t in_last = kept_rows % options_.shard_rows;
  for (int64_t s = 0; s < shard_index_; ++s) {  // every shard before the last is whole
    const std::string path = feature_shard_path(options_.dir, s);
    if (NpyWriter::count_rows(path, row_shape, options_.dtype) != options_.shard_rows)
      throw Error(path + ": does not hold the " + std::to_string(options_.shard_rows) + " rows the index names");
  }
  // Shards past the one being continued hold only rows the index never named: delete them.
  if (DIR* d = opendir(options_.dir.c_str())) {
    while (dirent* e = readdir(d)) {
      int64_t s = 0;
      std::string name = e->d_name;
      if (name.size() == 18 && name.rfind("features-", 0) == 0 && name.compare(14, 4, ".npy") == 0 &&
          parse_count(name.substr(9, 5), &s) && s > shard_index_)
        ::unlink((options_.dir + "/" + name).c_str());
    }
    closedir(d);
  }
  const std::string path = feature_shard_path(options_.dir, shard_index_);
  const bool continuing = kept_rows > 0 && ::access(path.c_str(), F_OK) == 0;
  shard_ = std::make_unique<NpyWriter>(path, row_shape, options_.dtype, continuing ? in_last : -1);
  rows_ = kept_rows;
  scratch_.resize(static_cast<size_t>(options_.width));
}

void EmbedSink::row(const std::string& path, const float* output, const std::string& error) {
  if (!output) {
    index_.write(format_.row(path, -1, -1, error));
    return;
  }
  const float* feature = output;
  if (options_.normalize) {
    double sum = 0.0;
    for (int64_t i = 0; i < options_.width; ++i) sum += double(output[i]) * output[i];
    const double scale = sum > 0 ? 1.0 / std::sqrt(sum) : 0.0;  // a zero feature stays zero
    for (int64_t i = 0; i < options_.width; ++i) scratch_[i] = static_cast<float>(output[i] * scale);
    feature = scratch_.data();
  }
  if (shard_->rows() == options_.shard_rows) {  // full: the next shard (the full one is flushed as it closes)
    if (!shard_->flush()) return;  // flush() reports it
    ++shard_index_;
    shard_ = std::make_unique<NpyWriter>(feature_shard_path(options_.dir, shard_index_),
                                         std::vector<int64_t>{options_.width}, options_.dtype);
  }
  index_.write(format_.row(path, shard_index_, shard_->rows(), ""));
  shard_->append(feature, 1);
  ++rows_;
}

bool EmbedSink::flush() {
  if (!shard_->flush()) return false;  // the features before the index that names them
  return index_.flush();
}

std::string EmbedSink::error() const {
  if (!shard_->error().empty()) return shard_->path() + ": " + shard_->error();
  return index_.name() + ": " + index_.error();
}

}  // namespace vitbatch
