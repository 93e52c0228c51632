// progress.hpp: the progress line on stderr (images done, failed, images/s, ETA when the
// total is known) and the closing summary.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace vitbatch {

// "[=====>    ]  1234/5000  24.7 img/s  ETA 2:32  (3 failed)"; total < 0: unknown.
std::string progress_line(int64_t done, int64_t failed, int64_t total, double seconds, int width = 30);
// "vitbatch: 14 classified, 1 failed, 0 skipped in 8.2 s (1.8 images/s)"
std::string summary_line(int64_t classified, int64_t failed, int64_t skipped, double seconds, bool interrupted);

class ProgressBar {
 public:
  // Draws on stderr, at most five times a second.
  void update(int64_t done, int64_t failed);
  void finish();  // clears the line
  std::atomic<int64_t> total{-1};  // set by whoever counts the inputs

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_{};
  bool drawn_ = false;
};

}  // namespace vitbatch
