// output_sink.hpp: where rows go: stdout or a file, written with write(2) so that a closed
// pipe (`| head`) is seen as EPIPE on the next flush rather than a signal, and the run can
// stop quietly. Any other write error (a full disk, /dev/full, a file that refuses writes)
// is not a closed pipe: it is kept, with its strerror, for the caller to report.
#pragma once

#include <string>

namespace vitbatch {

class OutputSink {
 public:
  static OutputSink to_stdout();
  // Truncates, or appends when `append` (--resume). Throws Error naming the file.
  static OutputSink to_file(const std::string& path, bool append);
  OutputSink(OutputSink&& other) noexcept;
  ~OutputSink();

  void write(const std::string& text) { buffer_ += text; }
  // Writes out the buffer. False once the output is gone (EPIPE or another write error).
  bool flush();
  bool broken() const { return broken_; }
  bool pipe_closed() const { return pipe_closed_; }  // the failure was EPIPE
  const std::string& error() const { return error_; }  // strerror of the failure
  const std::string& name() const { return name_; }    // the file, or "stdout"

 private:
  OutputSink(int fd, bool owned, std::string name) : fd_(fd), owned_(owned), name_(std::move(name)) {}
  int fd_;
  bool owned_;
  std::string name_;
  bool broken_ = false, pipe_closed_ = false;
  std::string buffer_, error_;
};

}  // namespace vitbatch
