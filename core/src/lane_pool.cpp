#include "lane_pool.hpp"

#include <csignal>

#include <pthread.h>

namespace vitbatch {

LanePool::LanePool(int lanes) {
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &previous);  // inherited by the threads started here
  try {
    for (int lane = 0; lane < lanes; ++lane) threads_.emplace_back([this, lane] { work(lane); });
  } catch (...) {
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    stop();  // the threads that did start
    throw;
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
}

LanePool::~LanePool() { stop(); }

void LanePool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    start_.notify_all();
  }
  for (auto& t : threads_) t.join();
}

void LanePool::run(const std::function<void(int lane)>& job) {
  std::unique_lock<std::mutex> lock(mutex_);
  job_ = &job;
  error_ = nullptr;
  busy_ = static_cast<int>(threads_.size());
  ++round_;
  start_.notify_all();
  done_.wait(lock, [this] { return busy_ == 0; });
  job_ = nullptr;
  if (error_) std::rethrow_exception(error_);
}

void LanePool::work(int lane) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    start_.wait(lock, [&] { return stop_ || round_ != seen; });
    if (stop_) return;
    seen = round_;
    const std::function<void(int)>* job = job_;
    lock.unlock();
    std::exception_ptr error;
    try {
      (*job)(lane);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    if (error && !error_) error_ = error;
    if (--busy_ == 0) done_.notify_one();
  }
}

}  // namespace vitbatch
