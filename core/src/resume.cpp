#include "vitbatch/resume.hpp"

#include "vitbatch/error.hpp"
#include "vitbatch/file_io.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace vitbatch {
namespace {

// The file a path names, through symlinks (the output itself when it is not a link).
std::string resolved(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) ? std::string(buf) : path;
}

void write_all(int fd, const std::string& text, const std::string& label) {
  if (int err = write_fully(fd, text.data(), text.size())) throw Error(label + ": cannot write: " + std::strerror(err));
}

}  // namespace

ResumeState prepare_resume(const std::string& path, const RecordFormat& format) {
  ResumeState state;
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return state;  // nothing to resume from (a dangling link: its target is made)
    throw Error(path + ": cannot resume: " + std::strerror(errno));
  }
  // Root may write anywhere; a file nobody may write is still not one to change.
  if (S_ISREG(st.st_mode) && (st.st_mode & 0222) == 0)
    throw Error(path + ": cannot resume: the file is read-only; make it writable (chmod u+w) first");
  std::string text = read_regular_file(path, uint64_t{1} << 40);
  if (text.empty()) return state;

  size_t complete = 0;
  std::vector<std::pair<std::string, RecordedRow>> rows;
  try {
    rows = format.parse(text, &complete);
  } catch (const Error& e) {
    throw Error(path + ": cannot resume: " + e.what());
  }
  state.repaired_tail = complete < text.size();
  std::string kept = format.header();
  state.has_header = true;
  bool dropped = state.repaired_tail;
  for (const auto& [raw, row] : rows) {
    if (!row.has_prediction) {
      ++state.dropped_errors;
      dropped = true;
      continue;
    }
    if (!state.done.insert(row.path).second) {  // keep one row per path
      dropped = true;
      continue;
    }
    kept += raw;
    state.last_position = std::max(state.last_position, row.position);
  }
  if (!dropped) return state;  // nothing to take out: the rest is appended

  // Rewrite the file the path names (the target of a link), in its directory, with its mode.
  std::string target = resolved(path);
  std::string tmp = target + ".vitbatch-resume.tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 07777);
  if (fd < 0) throw Error(tmp + ": cannot write: " + std::strerror(errno));
  try {
    if (fchmod(fd, st.st_mode & 07777) != 0) throw Error(tmp + ": cannot set its mode: " + std::strerror(errno));
    if (geteuid() == 0 && fchown(fd, st.st_uid, st.st_gid) != 0)
      throw Error(tmp + ": cannot set its owner: " + std::strerror(errno));
    write_all(fd, kept, tmp);
    if (fsync(fd) != 0) throw Error(tmp + ": cannot sync: " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    std::remove(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (std::rename(tmp.c_str(), target.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    throw Error(path + ": cannot replace with the repaired file: " + std::strerror(err));
  }
  state.rewritten = true;
  return state;
}

OutputLock::OutputLock(const std::string& output) {
  std::string path = resolved(output) + ".lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(path + ": cannot create the output's lock file: " + std::strerror(errno));
  if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char pid[32] = "";
    ssize_t n = pread(fd_, pid, sizeof pid - 1, 0);
    pid[n > 0 ? n : 0] = '\0';
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      throw Error(output + ": another vitbatch run is writing this file" +
                  (pid[0] ? " (pid " + std::string(pid, strcspn(pid, "\n")) + ")" : std::string()) +
                  "; wait for it to finish, or write to another file");
    throw Error(path + ": cannot lock: " + std::strerror(err));
  }
  std::string me = std::to_string(getpid()) + "\n";
  if (ftruncate(fd_, 0) == 0) (void)!pwrite(fd_, me.data(), me.size(), 0);
}

OutputLock::~OutputLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock; the file stays (unlinking it would race)
}

}  // namespace vitbatch
