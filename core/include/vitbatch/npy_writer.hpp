// npy_writer.hpp: a NumPy .npy file of float32 or float16 rows ([rows, cols...], C order)
// written as rows arrive. The header has room reserved for any row count and is rewritten
// in place by flush(), so after every flush the file is a complete, valid array of the rows
// written so far: a run killed between flushes leaves a file numpy.load reads, holding every
// flushed row.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vitbatch {

enum class NpyDtype { Float32, Float16 };

class NpyWriter {
 public:
  // Creates (or truncates) `path`. `row_shape`: the shape of one row ({D}, or {T, D}).
  // keep_rows >= 0: reopen an existing file of this dtype and row shape, keep its first
  // keep_rows rows (dropping any after them) and append after them (--resume). Throws Error.
  NpyWriter(const std::string& path, std::vector<int64_t> row_shape, NpyDtype dtype, int64_t keep_rows = -1);
  ~NpyWriter();
  NpyWriter(const NpyWriter&) = delete;
  NpyWriter& operator=(const NpyWriter&) = delete;

  // Appends rows (row_floats() floats each), converting to the file's dtype.
  void append(const float* rows, int64_t count);
  // Writes what was appended and rewrites the header's row count. False on a write error
  // (error() says which).
  bool flush();
  int64_t rows() const { return rows_; }
  int64_t row_floats() const { return row_floats_; }
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }

  // The number of complete rows in an existing .npy of this dtype and row shape, for
  // --resume; throws Error (naming the file) if it is not one.
  static int64_t count_rows(const std::string& path, const std::vector<int64_t>& row_shape, NpyDtype dtype);

 private:
  std::string header(int64_t rows) const;
  std::string path_;
  std::vector<int64_t> row_shape_;
  NpyDtype dtype_;
  int64_t row_floats_ = 1;
  int64_t rows_ = 0;          // appended
  int64_t flushed_rows_ = 0;  // in the header
  int fd_ = -1;
  std::string buffer_;
  std::string error_;
};

// IEEE half from float, round to nearest even (NumPy's astype(float16)).
uint16_t float_to_half(float value);

}  // namespace vitbatch
