// The work-stealing pool (see threadpool.h), the per-run current pool, shared pools, fork handling.
#include "threadpool.h"

#include "../cpu/cpu.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define ONNXFAST_PAUSE() _mm_pause()
#else
#define ONNXFAST_PAUSE() std::this_thread::yield()
#endif

namespace onnxfast {

namespace {

thread_local ThreadPool* t_pool = nullptr;
thread_local bool t_daz = false;
thread_local bool t_in_task = false;

std::mutex& registry_mu() {
  static auto* m = new std::mutex();
  return *m;
}
std::map<int, std::weak_ptr<ThreadPool>>& registry() {
  static auto* r = new std::map<int, std::weak_ptr<ThreadPool>>();
  return *r;
}
std::vector<ThreadPool*>& all_pools() {
  static auto* v = new std::vector<ThreadPool*>();
  return *v;
}
std::mutex& all_mu() {
  static auto* m = new std::mutex();
  return *m;
}

void atfork_child() {
  // Only this thread exists in the child: reset every pool without touching the parent's threads.
  new (&all_mu()) std::mutex();
  new (&registry_mu()) std::mutex();
  for (ThreadPool* p : all_pools()) p->reset_after_fork();
}

struct AtFork {
  AtFork() { pthread_atfork(nullptr, nullptr, &atfork_child); }
};
AtFork g_atfork;


int cgroup_cpu_limit() {
  // cgroup v2: "max 100000" or "200000 100000"; v1: cfs_quota_us / cfs_period_us
  std::ifstream f("/sys/fs/cgroup/cpu.max");
  std::string quota, period;
  if (f >> quota >> period) {
    if (quota != "max") {
      double q = std::stod(quota), p = std::stod(period);
      if (p > 0) return std::max(1, static_cast<int>(std::ceil(q / p)));
    }
    return 0;
  }
  std::ifstream fq("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), fp("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  long q = -1, p = 0;
  if (fq >> q && fp >> p && q > 0 && p > 0) return std::max(1, static_cast<int>(std::ceil(double(q) / p)));
  return 0;
}

}  // namespace

ThreadPool* current_pool() { return t_pool; }
PoolScope::PoolScope(ThreadPool* p, bool daz) : prev_(t_pool), prev_daz_(t_daz) {
  t_pool = p;
  t_daz = daz;
}
PoolScope::~PoolScope() {
  t_pool = prev_;
  t_daz = prev_daz_;
}

int ThreadPool::default_num_threads() {
  int n = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  int quota = cgroup_cpu_limit();
  if (quota > 0) n = std::min(n, quota);
  return std::max(1, n);
}

ThreadPool::ThreadPool(int num_threads, int spin_us)
    : num_threads_(std::max(1, num_threads)), spin_us_(spin_us), ranges_(std::max(1, num_threads)) {
  std::lock_guard<std::mutex> lk(all_mu());
  all_pools().push_back(this);
}

ThreadPool::~ThreadPool() {
  stop_workers();
  std::lock_guard<std::mutex> lk(all_mu());
  auto& v = all_pools();
  v.erase(std::remove(v.begin(), v.end(), this), v.end());
}

// The CPUs the workers keep to: when the pool has one thread per CPU this process may use, each worker
// keeps to one of the CPUs the calling thread is not on (re-assigned when the caller is seen on another
// CPU; the caller itself is never pinned). Left to the scheduler, a worker woken after an idle spell is
// often placed on the caller's CPU (a virtual machine's idle vCPU counts as busy), and the two share one
// core until the balancer moves one: a few-millisecond loop then runs at one thread's speed.
// ONNXFAST_PIN_WORKERS=0 leaves placement to the scheduler.
static std::vector<int> worker_cpus(int num_threads) {
  std::vector<int> cpus;
#ifdef __linux__
  const char* env = std::getenv("ONNXFAST_PIN_WORKERS");
  if (env && std::string(env) == "0") return cpus;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  if (static_cast<int>(cpus.size()) != num_threads) cpus.clear();
#else
  (void)num_threads;
#endif
  return cpus;
}

void ThreadPool::start_workers() {
  std::lock_guard<std::mutex> lk(start_mu_);
  if (started_) return;
  stop_ = false;
  cpus_ = num_threads_ > 1 ? worker_cpus(num_threads_) : std::vector<int>{};
  pinned_for_ = -1;
  for (int i = 1; i < num_threads_; ++i) {
    auto* arg = new std::pair<ThreadPool*, int>(this, i);
    pthread_t t;
    if (pthread_create(&t, nullptr, &ThreadPool::worker_main, arg) != 0) {
      delete arg;
      break;  // fewer workers: the loops still complete (the caller steals everything)
    }
    threads_.push_back(t);
  }
  started_ = true;
}

void ThreadPool::pin_workers_around(int caller_cpu) {
#ifdef __linux__
  std::vector<int> free_cpus;
  for (int c : cpus_)
    if (c != caller_cpu) free_cpus.push_back(c);
  if (free_cpus.empty()) return;
  for (size_t i = 0; i < threads_.size(); ++i) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(free_cpus[i % free_cpus.size()], &one);
    pthread_setaffinity_np(threads_[i], sizeof(one), &one);  // best effort: placement only, never correctness
  }
  pinned_for_ = caller_cpu;
#else
  (void)caller_cpu;
#endif
}

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    epoch_.fetch_add(1);
  }
  cv_work_.notify_all();
  for (pthread_t t : threads_) pthread_join(t, nullptr);
  threads_.clear();
  started_ = false;
}

void ThreadPool::reset_after_fork() {
  // The parent's worker threads do not exist here; drop them without joining.
  new (&start_mu_) std::mutex();
  new (&busy_mu_) std::mutex();
  new (&mu_) std::mutex();
  new (&cv_work_) std::condition_variable();
  new (&cv_done_) std::condition_variable();
  threads_.clear();
  started_ = false;
  stop_ = false;
  gate_.store(0);
  fn_ = nullptr;
}

void* ThreadPool::worker_main(void* arg) {
  auto* p = static_cast<std::pair<ThreadPool*, int>*>(arg);
  ThreadPool* pool = p->first;
  int self = p->second;
  delete p;
  uint64_t seen = 0;
  for (;;) {
    // Spin briefly for the next job, then sleep.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(pool->spin_us_.load());
    while (pool->epoch_.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < deadline) {
      for (int i = 0; i < 32; ++i) ONNXFAST_PAUSE();
    }
    {
      std::unique_lock<std::mutex> lk(pool->mu_);
      pool->cv_work_.wait(lk, [&] { return pool->epoch_.load() != seen || pool->stop_; });
      if (pool->stop_) return nullptr;
      seen = pool->epoch_.load();
    }
    // Join job `seen` if it is still open (the caller may have finished every block already and
    // moved on: then there is nothing to do, and the caller did not wait for this thread).
    uint64_t g = pool->gate_.load(std::memory_order_acquire);
    bool joined = false;
    while ((g >> 32) == (seen & 0xffffffffu) && !(g & kGateClosed)) {
      if (pool->gate_.compare_exchange_weak(g, g + 1, std::memory_order_acq_rel)) {
        joined = true;
        break;
      }
    }
    if (!joined) continue;
    pool->work(self);
    g = pool->gate_.fetch_sub(1, std::memory_order_acq_rel);
    if ((g & kGateClosed) && (g & kGateCount) == 1) {
      std::lock_guard<std::mutex> lk(pool->mu_);
      pool->cv_done_.notify_all();
    }
  }
}

bool ThreadPool::take(int self, int64_t& b, int64_t& e) {
  auto try_take = [&](Range& r, bool front) -> bool {
    uint64_t w = r.word.load(std::memory_order_acquire);
    for (;;) {
      uint32_t lo = static_cast<uint32_t>(w >> 32), hi = static_cast<uint32_t>(w);
      if (lo >= hi) return false;
      uint64_t nw = front ? (static_cast<uint64_t>(lo + 1) << 32) | hi : (static_cast<uint64_t>(lo) << 32) | (hi - 1);
      if (r.word.compare_exchange_weak(w, nw, std::memory_order_acq_rel)) {
        int64_t blk = front ? lo : hi - 1;
        b = blk * block_;
        e = std::min(n_, b + block_);
        return true;
      }
    }
  };
  if (try_take(ranges_[self], true)) return true;
  int n = static_cast<int>(ranges_.size());
  for (int k = 1; k < n; ++k)
    if (try_take(ranges_[(self + k) % n], false)) return true;
  return false;
}

void ThreadPool::work(int self) {
  t_in_task = true;
  DenormalScope dz(daz_);
  int64_t b, e;
  try {
    while (!failed_.load(std::memory_order_relaxed) && take(self, b, e)) (*fn_)(b, e);
  } catch (...) {
    std::lock_guard<std::mutex> lk(mu_);
    if (!error_) error_ = std::current_exception();
    failed_.store(true, std::memory_order_relaxed);
  }
  t_in_task = false;
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const Fn& fn, bool denormal_as_zero) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (num_threads_ <= 1 || n <= grain || t_in_task) {
    fn(0, n);
    return;
  }
  std::unique_lock<std::mutex> busy(busy_mu_, std::try_to_lock);
  if (!busy.owns_lock()) {  // another run is using the pool: run inline rather than wait
    fn(0, n);
    return;
  }
  start_workers();
#ifdef __linux__
  if (!cpus_.empty()) {
    const int cpu = sched_getcpu();
    if (cpu >= 0 && cpu != pinned_for_) pin_workers_around(cpu);
  }
#endif
  int parts = static_cast<int>(std::min<int64_t>(num_threads_, (n + grain - 1) / grain));
  parts = std::min(parts, static_cast<int>(threads_.size()) + 1);
  // Blocks: about 4 per participant, at least `grain` items, so stealing can balance the tail.
  block_ = std::max<int64_t>(grain, n / (static_cast<int64_t>(parts) * 4));
  n_ = n;
  int64_t nblocks = (n + block_ - 1) / block_;
  for (int i = 0; i < static_cast<int>(ranges_.size()); ++i) {
    uint64_t lo = i < parts ? static_cast<uint64_t>(nblocks * i / parts) : 0;
    uint64_t hi = i < parts ? static_cast<uint64_t>(nblocks * (i + 1) / parts) : 0;
    ranges_[i].word.store((lo << 32) | hi, std::memory_order_relaxed);
  }
  fn_ = &fn;
  daz_ = denormal_as_zero;
  failed_.store(false, std::memory_order_relaxed);
  error_ = nullptr;
  {
    std::lock_guard<std::mutex> lk(mu_);
    const uint64_t job = epoch_.load() + 1;
    gate_.store((job & 0xffffffffu) << 32, std::memory_order_release);
    epoch_.store(job, std::memory_order_release);
  }
  cv_work_.notify_all();
  work(0);
  // Every block is taken: close the job, then wait only for the workers inside it.
  if (gate_.fetch_or(kGateClosed, std::memory_order_acq_rel) & kGateCount) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_done_.wait(lk, [&] { return (gate_.load(std::memory_order_acquire) & kGateCount) == 0; });
  }
  if (error_) {
    std::exception_ptr err = std::move(error_);
    error_ = nullptr;
    std::rethrow_exception(err);
  }
}

void parallel_for_pool(ThreadPool* p, int64_t n, double cost_per_item, const ThreadPool::Fn& fn) {
  // Blocks of at least ~10 us of work.
  int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(10000.0 / std::max(cost_per_item, 1e-3)));
  p->parallel_for(n, grain, fn, t_daz);
}

std::shared_ptr<ThreadPool> shared_pool(int num_threads) {
  if (num_threads <= 0) num_threads = ThreadPool::default_num_threads();
  std::lock_guard<std::mutex> lk(registry_mu());
  auto& reg = registry();
  auto it = reg.find(num_threads);
  if (it != reg.end()) {
    if (auto p = it->second.lock()) return p;
  }
  auto p = std::make_shared<ThreadPool>(num_threads);
  reg[num_threads] = p;
  return p;
}

}  // namespace onnxfast
