// output_sink.hpp: where rows go: stdout or a file, written with write(2) so that a closed
// pipe (`| head`) is seen as EPIPE on the next flush rather than a signal, and the run can
// stop quietly.
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
  const std::string& error() const { return error_; }

 private:
  OutputSink(int fd, bool owned) : fd_(fd), owned_(owned) {}
  int fd_;
  bool owned_;
  bool broken_ = false;
  std::string buffer_, error_;
};

}  // namespace vitbatch
