// progress.hpp: the progress line on stderr (images done, failed, images/s, ETA when the
// total is known) and the closing summary.
//
// The bar owns the terminal line it draws on: every other write to the terminal (a
// diagnostic on stderr, rows on stdout when stdout is the same terminal) goes through
// print() or between pause() and resume(), which clear the line first, so text is never
// glued onto the bar. A background thread redraws it four times a second, so the rate and
// ETA move even while one long batch runs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace vitbatch {

// "[=====>    ]  1234/5000  24.7 img/s  ETA 2:32  (3 failed)"; total < 0: unknown.
std::string progress_line(int64_t done, int64_t failed, int64_t total, double seconds, int width = 30);

struct RunSummary {
  int64_t classified = 0, failed = 0, skipped = 0;
  double seconds = 0.0;
  bool interrupted = false;
  std::string running;  // "onednn fp32, 2 threads"; empty: not said
};
// "vitbatch: 14 classified, 1 failed, 0 skipped in 8.2 s (1.7 images/s, onednn fp32, 2 threads)"
// The rate counts classified images only: failures cost no model time.
std::string summary_line(const RunSummary& s);

class ProgressBar {
 public:
  // fd: where to draw (stderr).
  explicit ProgressBar(int fd = 2);
  ~ProgressBar();  // stops the redraw thread and clears the line
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void update(int64_t done, int64_t failed);  // cheap: the thread draws
  // Clears the bar, writes `text` (whole lines) to the bar's descriptor, redraws.
  void print(const std::string& text);
  // While paused the bar is cleared and not redrawn (the caller writes to the terminal).
  void pause();
  void resume();
  void finish();  // clears the line for good (idempotent)
  std::atomic<int64_t> total{-1};  // set by whoever counts the inputs

 private:
  void draw_locked();
  void clear_locked();
  int fd_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::atomic<int64_t> done_{0}, failed_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool drawn_ = false, paused_ = false, stopped_ = false;
  std::thread thread_;
};

}  // namespace vitbatch
