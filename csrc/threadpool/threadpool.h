// A work-stealing thread pool for intra-op parallelism.
//
// parallel_for splits [0, n) into one contiguous range per participant (workers plus the
// calling thread). Each walks its own range forward in blocks; when done it steals blocks
// from the back of the others' ranges. No allocation per loop. Idle workers spin briefly and
// then sleep, so an idle process burns no CPU. A parallel_for issued from inside a pool task
// (nested), or while the pool is busy with another caller, runs inline on the calling thread.
// After fork() the child's pools have no workers and start new ones on first use.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include <pthread.h>

namespace onnxfast {

class ThreadPool {
 public:
  using Fn = std::function<void(int64_t begin, int64_t end)>;

  // num_threads counts the calling thread: 1 means no workers.
  explicit ThreadPool(int num_threads, int spin_us = 50);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }
  // Run fn over [0, n) in blocks of at least `grain` items. An exception thrown by fn (on any thread)
  // stops the other participants from taking more blocks and is rethrown here once all have finished.
  void parallel_for(int64_t n, int64_t grain, const Fn& fn, bool denormal_as_zero = false);
  void set_spin_us(int us) { spin_us_ = us; }

  void reset_after_fork();  // child side of fork(): forget the parent's workers
  static int default_num_threads();  // CPUs this process may use (affinity, cgroup quota)

 private:
  // A participant's remaining blocks [begin, end) packed in one word (begin << 32 | end): the
  // owner takes from the front, thieves from the back, both by compare-and-swap.
  struct alignas(64) Range {
    std::atomic<uint64_t> word{0};
  };
  void start_workers();
  void stop_workers();
  static void* worker_main(void* arg);
  void work(int self);
  bool take(int self, int64_t& b, int64_t& e);

  int num_threads_;
  std::atomic<int> spin_us_;
  std::vector<pthread_t> threads_;
  bool started_ = false;
  // Pinning (see worker_cpus in threadpool.cpp): the CPUs the workers keep to, and the caller's CPU the
  // current assignment leaves free (-1: none made yet).
  std::vector<int> cpus_;
  int pinned_for_ = -1;
  void pin_workers_around(int caller_cpu);
  std::mutex start_mu_;

  // current job
  std::mutex busy_mu_;  // one parallel_for at a time; others run inline
  std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  std::atomic<uint64_t> epoch_{0};
  // The job's gate: (job << 32) | closed bit | workers inside. A worker joins only the job it was
  // woken for and only while it is open; the caller, done with every block, closes it and waits
  // for those inside, never for a worker that has not woken yet (descheduled, or still asleep).
  std::atomic<uint64_t> gate_{0};
  static constexpr uint64_t kGateClosed = 1ull << 31, kGateCount = kGateClosed - 1;
  bool stop_ = false;
  const Fn* fn_ = nullptr;
  int64_t block_ = 1;  // items per block
  int64_t n_ = 0;      // items
  bool daz_ = false;
  std::vector<Range> ranges_;
  std::atomic<bool> failed_{false};  // a participant's fn threw: the others stop taking blocks
  std::exception_ptr error_;         // the first exception (guarded by mu_)
};

// The pool the executor installed for the current run (null: run inline).
ThreadPool* current_pool();
class PoolScope {
 public:
  PoolScope(ThreadPool* p, bool denormal_as_zero);
  ~PoolScope();

 private:
  ThreadPool* prev_;
  bool prev_daz_;
};

// parallel_for on the current pool, or inline. `cost` is the work per item in rough
// nanoseconds-of-one-thread units: loops under ~20 us in total stay single-threaded (and are
// called directly, without wrapping the body in a std::function).
void parallel_for_pool(ThreadPool* p, int64_t n, double cost_per_item, const ThreadPool::Fn& fn);

template <typename F>
inline void parallel_for(int64_t n, double cost_per_item, F&& fn) {
  if (n <= 0) return;
  ThreadPool* p = current_pool();
  if (!p || p->num_threads() <= 1 || n <= 1 || cost_per_item * static_cast<double>(n) < 20000.0) {
    fn(int64_t(0), n);
    return;
  }
  parallel_for_pool(p, n, cost_per_item, ThreadPool::Fn(std::forward<F>(fn)));
}

// Process-wide pools shared by sessions asking for the same number of threads.
std::shared_ptr<ThreadPool> shared_pool(int num_threads);

}  // namespace onnxfast
