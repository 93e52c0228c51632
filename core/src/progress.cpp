#include "vitbatch/progress.hpp"

#include "vitbatch/file_io.hpp"

#include <unistd.h>

#include <cstdio>

namespace vitbatch {
namespace {

void write_all(int fd, const std::string& text) {
  (void)write_fully(fd, text.data(), text.size());  // a terminal that went away: nothing to do here
}

}  // namespace

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

std::string summary_line(const RunSummary& s) {
  char buf[320];
  std::snprintf(buf, sizeof buf, "vitbatch: %s%lld classified, %lld failed, %lld skipped in %.1f s (%.1f images/s%s%s)",
                s.interrupted ? "interrupted: " : "", static_cast<long long>(s.classified),
                static_cast<long long>(s.failed), static_cast<long long>(s.skipped), s.seconds,
                s.seconds > 0 ? s.classified / s.seconds : 0.0, s.running.empty() ? "" : ", ", s.running.c_str());
  return buf;
}

ProgressBar::ProgressBar(int fd) : fd_(fd) {
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopped_) {
      if (!paused_) draw_locked();
      wake_.wait_for(lock, std::chrono::milliseconds(250));
    }
  });
}

ProgressBar::~ProgressBar() {
  finish();
}

void ProgressBar::update(int64_t done, int64_t failed) {
  done_.store(done);
  failed_.store(failed);
}

void ProgressBar::draw_locked() {
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  write_all(fd_, "\r\033[K" + progress_line(done_.load(), failed_.load(), total.load(), seconds));
  drawn_ = true;
}

void ProgressBar::clear_locked() {
  if (drawn_) write_all(fd_, "\r\033[K");
  drawn_ = false;
}

void ProgressBar::print(const std::string& text) {
  std::lock_guard<std::mutex> lock(mutex_);
  clear_locked();
  write_all(fd_, text);
  if (!paused_ && !stopped_) draw_locked();
}

void ProgressBar::pause() {
  std::lock_guard<std::mutex> lock(mutex_);
  paused_ = true;
  clear_locked();
}

void ProgressBar::resume() {
  std::lock_guard<std::mutex> lock(mutex_);
  paused_ = false;
  if (!stopped_) draw_locked();
}

void ProgressBar::finish() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
    clear_locked();
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace vitbatch
