#include "vitbatch/progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace vitbatch {

std::string progress_line(int64_t done, int64_t failed, int64_t total, double seconds, int width) {
  double rate = seconds > 0 ? done / seconds : 0.0;
  char buf[160];
  std::string bar;
  if (total > 0) {
    int filled = static_cast<int>(width * std::min<double>(1.0, double(done) / double(total)));
    bar = "[" + std::string(filled, '=') + (filled < width ? ">" : "") + std::string(width - filled - (filled < width), ' ') + "] ";
    std::snprintf(buf, sizeof buf, "%lld/%lld  %.1f img/s", static_cast<long long>(done), static_cast<long long>(total), rate);
    bar += buf;
    if (rate > 0 && total >= done) {
      long long eta = static_cast<long long>((total - done) / rate + 0.5);
      std::snprintf(buf, sizeof buf, "  ETA %lld:%02lld", eta / 60, eta % 60);
      bar += buf;
    }
  } else {
    std::snprintf(buf, sizeof buf, "%lld done  %.1f img/s", static_cast<long long>(done), rate);
    bar = buf;
  }
  if (failed > 0) bar += "  (" + std::to_string(failed) + " failed)";
  return bar;
}

std::string summary_line(int64_t classified, int64_t failed, int64_t skipped, double seconds, bool interrupted) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "vitbatch: %s%lld classified, %lld failed, %lld skipped in %.1f s (%.1f images/s)",
                interrupted ? "interrupted: " : "", static_cast<long long>(classified), static_cast<long long>(failed),
                static_cast<long long>(skipped), seconds, seconds > 0 ? (classified + failed) / seconds : 0.0);
  return buf;
}

void ProgressBar::update(int64_t done, int64_t failed) {
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_ < std::chrono::milliseconds(200)) return;
  last_ = now;
  drawn_ = true;
  double seconds = std::chrono::duration<double>(now - start_).count();
  std::string line = "\r\033[K" + progress_line(done, failed, total.load(), seconds);
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

void ProgressBar::finish() {
  if (!drawn_) return;
  const char clear[] = "\r\033[K";
  (void)!::write(STDERR_FILENO, clear, sizeof clear - 1);
}

}  // namespace vitbatch
