#include "workers.h"

#include <ATen/Parallel.h>
#include <immintrin.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace clinidoc {
namespace {

using Clock = std::chrono::steady_clock;

// How long an idle worker waits for the next loop before it sleeps: first with pause instructions, then yielding
// its CPU to any other thread that wants it (the scheduler's own Python work, a request's reader). A step's loops
// follow each other within microseconds; between steps one wake-up costs little, and spinning longer would take the
// CPUs from the PyTorch work (prefill, sampling) that runs between them.
constexpr auto kPause = std::chrono::microseconds(50);
constexpr auto kYield = std::chrono::microseconds(250);

thread_local bool in_part = false;

class Workers {
 public:
  // As many threads as torch's own intra-op setting, the caller being one of them. They live as long as the process.
  explicit Workers(int64_t threads) {
    count_ = threads;
    for (int64_t t = 1; t < threads; ++t) std::thread([this, t] { work(t); }).detach();
  }

  int64_t threads() const { return count_; }

  void run(int64_t begin, int64_t end, int64_t parts, const std::function<void(int64_t, int64_t)>& body) {
    std::lock_guard<std::mutex> one_loop_at_a_time(running_);
    begin_ = begin;
    end_ = end;
    parts_ = parts;
    body_ = &body;
    // Every worker answers every loop, those without a part too, so none can still be reading this loop's fields
    // when the next one writes them.
    pending_.store(count_ - 1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    awake_.notify_all();
    run_part(0);
    while (pending_.load(std::memory_order_acquire) > 0) _mm_pause();
  }

 private:
  void run_part(int64_t part) {
    const int64_t size = end_ - begin_;
    in_part = true;
    (*body_)(begin_ + size * part / parts_, begin_ + size * (part + 1) / parts_);
    in_part = false;
  }

  void work(int64_t part) {
    for (uint64_t seen = 0;;) {
      seen = wait_for_loop(seen);
      if (part < parts_) run_part(part);  // a loop of fewer parts than threads leaves the last threads out
      pending_.fetch_sub(1, std::memory_order_release);
    }
  }

  // The generation of the next loop after `seen`: spin, then yield, then sleep until it comes.
  uint64_t wait_for_loop(uint64_t seen) {
    const auto started = Clock::now();
    for (uint64_t spins = 0;; ++spins) {
      const uint64_t now = generation_.load(std::memory_order_acquire);
      if (now != seen) return now;
      if (spins % 64 == 0) {
        const auto waited = Clock::now() - started;
        if (waited > kYield) break;
        if (waited > kPause) sched_yield();
      }
      _mm_pause();
    }
    std::unique_lock<std::mutex> lock(mutex_);
    awake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
    return generation_.load(std::memory_order_acquire);
  }

  int64_t count_ = 1;
  std::mutex mutex_, running_;
  std::condition_variable awake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> pending_{0};
  // The loop being run, written before its generation is published and read only after.
  int64_t begin_ = 0, end_ = 0, parts_ = 1;
  const std::function<void(int64_t, int64_t)>* body_ = nullptr;
};

// The process's workers, started on first use. A child forked from a process that had them has none of their
// threads, so it starts its own (the parent's object is left behind, never used).
Workers& workers() {
  static Workers* pool = nullptr;
  static pid_t owner = 0;
  static std::mutex creating;
  std::lock_guard<std::mutex> lock(creating);
  if (pool == nullptr || owner != getpid()) {
    pool = new Workers(std::max(1, at::get_num_threads()));
    owner = getpid();
  }
  return *pool;
}

}  // namespace

void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  if (begin >= end) return;
  const int64_t size = end - begin;
  if (in_part || size <= grain) {
    body(begin, end);
    return;
  }
  Workers& pool = workers();
  const int64_t parts = std::min(pool.threads(), (size + grain - 1) / grain);
  if (parts <= 1) {
    body(begin, end);
    return;
  }
  pool.run(begin, end, parts, body);
}

}  // namespace clinidoc
