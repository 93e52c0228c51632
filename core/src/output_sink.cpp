#include "vitbatch/output_sink.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/file_io.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace vitbatch {

OutputSink OutputSink::to_stdout() { return OutputSink(STDOUT_FILENO, false, "stdout"); }

OutputSink OutputSink::to_file(const std::string& path, bool append) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644);
  if (fd < 0) throw Error(path + ": cannot open for writing: " + std::strerror(errno));
  return OutputSink(fd, true, path);
}

OutputSink::OutputSink(OutputSink&& o) noexcept
    : fd_(o.fd_), owned_(o.owned_), name_(std::move(o.name_)), broken_(o.broken_), pipe_closed_(o.pipe_closed_),
      buffer_(std::move(o.buffer_)), error_(std::move(o.error_)) {
  o.owned_ = false;
}

OutputSink::~OutputSink() {
  flush();
  if (owned_) ::close(fd_);
}

bool OutputSink::flush() {
  if (!broken_) {
    if (int err = write_fully(fd_, buffer_.data(), buffer_.size())) {
      broken_ = true;
      pipe_closed_ = err == EPIPE;
      error_ = std::strerror(err);
    }
  }
  buffer_.clear();
  return !broken_;
}

}  // namespace vitbatch
