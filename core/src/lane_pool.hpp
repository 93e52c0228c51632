// lane_pool.hpp: the threads behind the executor's lanes. Each lane has one thread for the
// life of the pool, so that a backend context always runs on the same thread (OpenMP's
// thread count, set per thread, stays the lane's own) and a batch costs no thread start.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace vitbatch {

class LanePool {
 public:
  // Starts `lanes` threads with every signal blocked: a SIGINT or SIGTERM reaches the
  // caller's threads, whose handlers decide what stops.
  explicit LanePool(int lanes);
  ~LanePool();
  LanePool(const LanePool&) = delete;
  LanePool& operator=(const LanePool&) = delete;

  // Runs job(lane) on every lane's thread at once and returns when all have finished;
  // rethrows the first exception a lane threw (the others still finish their job).
  void run(const std::function<void(int lane)>& job);

 private:
  void work(int lane);
  void stop();  // ends and joins every thread started

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable start_, done_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t round_ = 0;  // bumped per run(): a lane runs each round once
  int busy_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace vitbatch
