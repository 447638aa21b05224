// C++ unit tests of the native kernels, without Python: SGEMM (every transpose, alpha/beta,
// pre-packed B, edge sizes around the micro-kernel and K-block sizes; the blocking derived from the
// platform table's cache sizes and their overrides), the vector math row
// functions, the thread pool, the Add / Conv / ConvTranspose kernels through the kernel table, and the reduction
// engine / pooling / Transpose kernels (reduce.cpp, pooling.cpp, tensor_ops.cpp) and Resize (resize.cpp),
// the executor (a plan of native and C++ host steps run without Python),
// and memory.cpp (block cache and size classes, live-byte budget, cgroup limit parsing).
// Built and run by tests/test_cpp_units.py (natively, at every ISA tier) and by
// ci/cross_aarch64.sh (cross-compiled for aarch64, run under qemu-user).
// Exit status 0 when every check passes; failures are printed one per line.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <stdexcept>
#include <atomic>
#include <vector>

#include "../../csrc/core/errors.h"
#include "../../csrc/core/device.h"
#include "../../csrc/core/executor.h"
#include "../../csrc/core/mem_pattern.h"
#include "../../csrc/core/memory.h"
#include "../../csrc/core/tensor.h"
#include "../../csrc/cpu/cpu.h"
#include "../../csrc/kernels/gemm.h"
#include "../../csrc/kernels/gemm_tiers.h"
#include "../../csrc/kernels/kernel.h"
#include "../../csrc/kernels/reduce.h"
#include "../../csrc/kernels/vecmath.h"
#include "../../csrc/threadpool/threadpool.h"

using namespace onnxfast;

namespace {

int g_checks = 0, g_failures = 0;

void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    if (g_failures <= 50) std::printf("FAIL %s\n", what.c_str());
  }
}

std::vector<float> random_floats(size_t n, std::mt19937& gen, float scale = 1.f) {
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

// ---- SGEMM ------------------------------------------------------------------------------

void ref_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, const float* B,
              float beta, const float* C0, std::vector<double>& out) {
  out.assign(static_cast<size_t>(M * N), 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        double a = ta ? A[k * M + i] : A[i * K + k];
        double b = tb ? B[j * K + k] : B[k * N + j];
        s += a * b;
      }
      out[i * N + j] = alpha * s + (beta == 0.f ? 0.0 : beta * static_cast<double>(C0[i * N + j]));
    }
}

void test_sgemm() {
  std::mt19937 gen(1);
  const int64_t Ms[] = {0, 1, 2, 5, 12, 13, 25};
  const int64_t Ns[] = {1, 7, 16, 17, 33, 100};
  const int64_t Ks[] = {0, 1, 3, 17, 257};
  const float ab[][2] = {{1.f, 0.f}, {0.5f, 2.f}, {1.f, 1.f}};
  for (int64_t M : Ms)
    for (int64_t N : Ns)
      for (int64_t K : Ks)
        for (int t = 0; t < 4; ++t)
          for (const auto& p : ab) {
            const bool ta = t & 1, tb = t & 2;
            auto A = random_floats(static_cast<size_t>(M * K), gen);
            auto B = random_floats(static_cast<size_t>(K * N), gen);
            auto C = random_floats(static_cast<size_t>(M * N), gen);
            // beta == 0 must not read C: poison it with NaN.
            if (p[1] == 0.f) std::fill(C.begin(), C.end(), std::nanf(""));
            std::vector<double> ref;
            ref_gemm(ta, tb, M, N, K, p[0], A.data(), B.data(), p[1], C.data(), ref);
            std::vector<float> got = C;
            sgemm(ta, tb, M, N, K, p[0], A.data(), ta ? M : K, B.data(), tb ? K : N, p[1], got.data(), N);
            std::vector<float> packed = C;
            if (!ta) {
              PackedB pb = sgemm_pack_b(tb, K, N, B.data(), tb ? K : N);
              sgemm_packed(false, M, N, K, p[0], A.data(), K, pb, p[1], packed.data(), N);
            }
            double worst = 0;
            for (size_t i = 0; i < ref.size(); ++i) {
              const double tol = 1e-5 * (K + 2);
              worst = std::max(worst, std::fabs(got[i] - ref[i]) / tol);
              if (!ta) worst = std::max(worst, std::fabs(packed[i] - ref[i]) / tol);
              if (std::isnan(got[i]) || (!ta && std::isnan(packed[i]))) worst = 1e9;
            }
            char what[160];
            std::snprintf(what, sizeof(what), "sgemm M=%ld N=%ld K=%ld transA=%d transB=%d alpha=%g beta=%g (err/tol %g)",
                          static_cast<long>(M), static_cast<long>(N), static_cast<long>(K), ta, tb, p[0], p[1], worst);
            check(worst <= 1.0, what);
          }
}

void test_sgemm_threads_bitwise() {
  std::mt19937 gen(2);
  const int64_t M = 150, N = 230, K = 300;
  auto A = random_floats(M * K, gen), B = random_floats(K * N, gen);
  std::vector<float> c1(M * N), c2(M * N);
  sgemm(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, c1.data(), N);
  ThreadPool pool(2);
  {
    PoolScope scope(&pool, false);
    sgemm(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, c2.data(), N);
  }
  check(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)) == 0, "sgemm: 1 and 2 threads bitwise equal");
}

// sgemm_kblock's fused store (MicroEpilogue) against the separate pass it replaces
// (Activation::apply on the stored rows): bitwise, over row tails of every tier's strip, column
// tails of its panels, two K blocks, zero and NaN values, each op with and without a residual.
void test_sgemm_kblock_epilogue() {
  std::mt19937 gen(17);
  const std::pair<Activation::Kind, MicroEpilogue::Op> ops[] = {{Activation::kNone, MicroEpilogue::kNone},
                                                                  {Activation::kRelu, MicroEpilogue::kRelu},
                                                                  {Activation::kClip, MicroEpilogue::kClip},
                                                                  {Activation::kLeakyRelu, MicroEpilogue::kLeakyRelu}};
  for (int64_t M : {1, 5, 13, 25})
    for (int64_t K : {3, 300})
      for (int64_t nc : {1, 9, 17, 40})
        for (const auto& op : ops)
          for (bool with_res : {false, true}) {
            auto a = random_floats(static_cast<size_t>(M * K), gen), bm = random_floats(static_cast<size_t>(K * nc), gen);
            auto bias = random_floats(static_cast<size_t>(M), gen), res = random_floats(static_cast<size_t>(M * nc), gen);
            for (size_t i = 0; i < bias.size(); i += 3) bias[i] = 0.f;  // the no-add branch
            if (K == 3) bm[0] = std::nanf("");                          // a NaN column
            res[1 % res.size()] = -0.f;
            const PackedA pa = sgemm_pack_a(M, K, a.data(), K);
            std::vector<float> want(static_cast<size_t>(M * nc)), got(want.size());
            Activation act;
            act.kind = op.first;
            act.p0 = op.first == Activation::kClip ? -0.5f : 0.1f;
            act.p1 = 0.75f;
            MicroEpilogue e;
            check(act.to_micro(e) && e.op == op.second, "Activation::to_micro");
            e.row_bias = bias.data();
            e.residual = with_res ? res.data() : nullptr;
            e.ldr = nc;
            for (int64_t k0 = 0; k0 < K; k0 += kGemmKC) {
              const int64_t kc = std::min(kGemmKC, K - k0);
              const size_t nblk = static_cast<size_t>(kc * ((nc + 15) / 16) * 16);
              std::shared_ptr<float> blk_mem = alloc_floats(nblk);  // panels are read with aligned loads
              float* blk = blk_mem.get();
              std::fill(blk, blk + nblk, 0.f);
              for (int64_t k = 0; k < kc; ++k)
                for (int64_t j = 0; j < nc; ++j) blk[packed_b_index(j, k, kc)] = bm[(k0 + k) * nc + j];
              const float beta = k0 == 0 ? 0.f : 1.f;
              const bool last = k0 + kc >= K;
              sgemm_kblock(pa, 0, M, k0, kc, blk, nc, want.data(), nc, beta);
              sgemm_kblock(pa, 0, M, k0, kc, blk, nc, got.data(), nc, beta, last ? &e : nullptr);
            }
            for (int64_t i = 0; i < M; ++i)
              act.apply(want.data() + i * nc, want.data() + i * nc, nc, bias[i], with_res ? res.data() + i * nc : nullptr);
            check(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) == 0,
                  "sgemm_kblock fused epilogue M=" + std::to_string(M) + " K=" + std::to_string(K) + " nc=" +
                      std::to_string(nc) + " op=" + std::to_string(op.second) + " residual=" + std::to_string(with_res));
          }
}

// choose_grid: one thread takes the fewest tiles; threads get P..4P tasks whenever the product
// has that many strips x column steps (counting the outer copies), else as many as it has; the
// tiles cover C exactly once (mc, nc multiples of mr, step; no empty tile).
void test_choose_grid() {
  auto tiles = [](int64_t total, int64_t parts, int64_t unit) {
    const int64_t size = ((total + parts - 1) / parts + unit - 1) / unit * unit;
    return std::make_pair(size, (total + size - 1) / size);
  };
  struct Case {
    int64_t M, N, K, mr, step, P, nc_max, outer;
  };
  const Case cases[] = {{512, 196, 1024, 12, 16, 1, 256, 1},  {512, 196, 1024, 12, 16, 2, 256, 1},
                        {64, 3136, 576, 12, 16, 2, 256, 1},   {1024, 1024, 1024, 12, 32, 2, 1024, 1},
                        {128, 128, 128, 12, 32, 4, 1024, 1},  {5, 7, 3, 12, 32, 8, 1024, 1},
                        {256, 49, 288, 12, 16, 2, 256, 8},    {36, 100, 9, 6, 16, 3, 256, 2},
                        {3000, 40, 64, 12, 32, 2, 1024, 1},   {12, 4000, 64, 12, 16, 2, 256, 1}};
  for (const Case& c : cases) {
    const TaskGrid grid = choose_grid(GridProblem{c.M, c.N, c.K, c.mr, c.step, c.P, c.nc_max, c.outer, 24.0, 8.0});
    const int64_t mb = grid.mb, nb = grid.nb;
    const std::string what = "choose_grid " + std::to_string(c.M) + "x" + std::to_string(c.N) + " P" + std::to_string(c.P) +
                             " outer " + std::to_string(c.outer) + ": " + std::to_string(mb) + " x " + std::to_string(nb);
    const auto [mc, tm] = tiles(c.M, mb, c.mr);
    const auto [nc, tn] = tiles(c.N, nb, c.step);
    check(mb >= 1 && nb >= 1 && tm == mb && tn == nb && mc % c.mr == 0 && nc % c.step == 0, what + " is a grid");
    check(nc <= std::max(c.nc_max, c.step), what + " keeps tiles within nc_max");
    const int64_t tasks = c.outer * mb * nb;
    const int64_t most = c.outer * ((c.M + c.mr - 1) / c.mr) * ((c.N + c.step - 1) / c.step);
    if (c.P == 1)
      check(mb == 1 && nb == (c.N + c.nc_max - 1) / c.nc_max, what + " is the fewest tiles for one thread");
    else if (most >= c.P)
      check(tasks >= c.P && (tasks <= 4 * c.P || (mb == 1 && nb == (c.N + c.nc_max - 1) / c.nc_max)),
            what + " has P..4P tasks");
    else
      check(tasks == most, what + " has every tile there is");
  }
}

// The platform table's cache sizes (cpu.h) and the GEMM blocking derived from them: the override
// parser, nc_max from L2, and a product computed under two L2 sizes (different column tiles) giving
// the same bits, since nc only partitions N.
void test_platform_caches() {
  const CacheSizes det = platform().detected;
  check(det.l1d >= 1024 && det.l2 >= det.l1d && det.l3 > 0, "platform: detected cache sizes are plausible");
  check(!platform().cache_source.empty(), "platform: cache_source names where the sizes came from");
  check(platform().vector_bytes == (active_isa() == Isa::kAvx512 ? 64 : active_isa() == Isa::kAvx2 ? 32 : 16),
        "platform: vector_bytes is the active tier's");

  CacheSizes c{1, 2, 3};
  std::string err;
  check(parse_cache_sizes(" l2=1M, l1d = 48k,", &c, &err) && c.l1d == 48 << 10 && c.l2 == 1 << 20 && c.l3 == 3,
        "parse_cache_sizes: a subset, spaces and a trailing comma (unnamed entries kept)");
  check(parse_cache_sizes("l3=32MiB", &c, &err) && c.l3 == 32 << 20, "parse_cache_sizes: MiB");
  check(parse_cache_size("2097152") == 2 << 20 && parse_cache_size("1G") == int64_t(1) << 30, "parse_cache_size");
  for (const char* bad : {"l4=1M", "l2=1Q", "l2", "l2=", "l2=0", "l2=512", "l2=2T", "l2=1M,l2=2M", "l2=-1M", "=1M"}) {
    CacheSizes before{7, 8, 9}, d = before;
    err.clear();
    const bool ok = parse_cache_sizes(bad, &d, &err);
    check(!ok && err.find("bad entry") != std::string::npos && d.l1d == 7 && d.l2 == 8 && d.l3 == 9,
          std::string("parse_cache_sizes rejects '") + bad + "' and leaves the sizes: " + err);
  }

  check(gemm_nc_max(2 << 20) == 1024 && gemm_nc_max(1 << 20) == 512 && gemm_nc_max(1280 << 10) == 640 &&
            gemm_nc_max(256 << 10) == 128 && gemm_nc_max(1 << 10) == 64 && gemm_nc_max(int64_t(1) << 40) == 4096,
        "gemm_nc_max: half of L2 in kc x nc floats, 64..4096");

  std::mt19937 gen(5);
  const int64_t M = 70, N = 700, K = 300;
  auto A = random_floats(M * K, gen), B = random_floats(K * N, gen);
  std::vector<float> c1(M * N), c2(M * N);
  sgemm(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, c1.data(), N);
  const CacheSizes old = set_cache_sizes(CacheSizes{-1, 128 << 10, -1});
  check(cache_sizes().l2 == 128 << 10 && cache_sizes().l1d == old.l1d, "set_cache_sizes: sets L2 only");
  const GemmBlocking small = gemm_blocking(false, M, N, K, 1, false);
  check(small.nc_max == 64 && small.grid.nb == 11 && small.grid.nc == 64, "gemm_blocking follows the L2 override");
  sgemm(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, c2.data(), N);
  check(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)) == 0, "sgemm: same bits under another L2 size");
  set_cache_sizes(CacheSizes{0, 0, 0});
  check(cache_sizes().l2 == det.l2 && gemm_blocking(false, M, N, K, 1, false).nc_max == gemm_nc_max(det.l2),
        "set_cache_sizes: 0 restores the detected sizes");
  set_cache_sizes(old);
}

// ---- vector math --------------------------------------------------------------------------

double rel_err(double got, double ref) {
  return std::fabs(ref) > 1e-30 ? std::fabs(got - ref) / std::fabs(ref) : std::fabs(got - ref);
}

void test_vecmath() {
  const VecMath& vm = vecmath();
  std::vector<float> x;
  for (int i = 0; i <= 4000; ++i) x.push_back(-12.f + 24.f * i / 4000.f);
  for (int i = 0; i <= 50; ++i) x.push_back(-1e-3f + 2e-3f * i / 50.f);
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> y(x.size());
  struct Case {
    const char* name;
    std::function<void()> run;
    std::function<double(double)> ref;
  };
  const Case cases[] = {
      {"exp", [&] { vm.exp(x.data(), y.data(), n); }, [](double v) { return std::exp(v); }},
      {"erf", [&] { vm.erf(x.data(), y.data(), n); }, [](double v) { return std::erf(v); }},
      {"tanh", [&] { vm.tanh(x.data(), y.data(), n); }, [](double v) { return std::tanh(v); }},
      {"sigmoid", [&] { vm.sigmoid(x.data(), y.data(), n); }, [](double v) { return 1 / (1 + std::exp(-v)); }},
      {"softplus", [&] { vm.act(ActKind::kSoftplus, x.data(), y.data(), n, 0, 0); },
       [](double v) { return std::log1p(std::exp(v)); }},
      {"elu", [&] { vm.act(ActKind::kElu, x.data(), y.data(), n, 0.7f, 0); },
       [](double v) { return v > 0 ? v : 0.7 * std::expm1(v); }},
      {"mish", [&] { vm.act(ActKind::kMish, x.data(), y.data(), n, 0, 0); },
       [](double v) { return v * std::tanh(std::log1p(std::exp(v))); }},
      {"swish", [&] { vm.act(ActKind::kSwish, x.data(), y.data(), n, 0.8f, 0); },
       [](double v) { return v / (1 + std::exp(-0.8 * v)); }},
  };
  for (const Case& c : cases) {
    c.run();
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, rel_err(y[i], c.ref(x[i])));
    check(worst < 2e-6, std::string("vecmath ") + c.name + " relative error " + std::to_string(worst));
  }
  // log over magnitudes 1e-44 .. 1e38 (subnormals included), each length up to 40 (bodies and tails).
  {
    std::vector<float> xs;
    for (int e = -44; e <= 38; ++e)
      for (float m : {1.f, 1.5f, 2.9f, 7.3f}) {
        const float v = m * std::pow(10.f, static_cast<float>(e));
        if (v > 0 && std::isfinite(v)) xs.push_back(v);
      }
    std::vector<float> ys(xs.size());
    double worst = 0;  // relative to 2e-7 (about 1.7 ulp)
    auto score = [&](int64_t len) {
      for (int64_t i = 0; i < len; ++i) worst = std::max(worst, rel_err(ys[i], std::log(static_cast<double>(xs[i]))) / 2e-7);
    };
    for (int64_t len = 0; len <= 40; ++len) {
      vm.act(ActKind::kLog, xs.data(), ys.data(), len, 0, 0);
      score(len);
    }
    vm.act(ActKind::kLog, xs.data(), ys.data(), static_cast<int64_t>(xs.size()), 0, 0);
    score(static_cast<int64_t>(xs.size()));
    check(worst <= 1.0, "vecmath log error " + std::to_string(worst));
  }
  // log's special inputs, in vector bodies and scalar tails: +-0 -> -inf, negatives (subnormal to -inf) -> NaN,
  // inf -> inf, NaN -> NaN. The bits of -0 and of tiny negatives once overflowed a signed subtraction (UBSan,
  // ci/sanitize.sh).
  {
    const float inf = std::numeric_limits<float>::infinity();
    const float specials[] = {0.f, -0.f, -1e-45f, -1e-40f, -1e-38f, -0.5f, -1.f, -3e38f, -inf, inf,
                              std::numeric_limits<float>::quiet_NaN()};
    for (int64_t len : {int64_t(1), int64_t(7), int64_t(16), int64_t(33)}) {
      std::vector<float> xs(static_cast<size_t>(len) * 11), ys(xs.size());
      for (size_t i = 0; i < xs.size(); ++i) xs[i] = specials[i % 11];
      vm.act(ActKind::kLog, xs.data(), ys.data(), static_cast<int64_t>(xs.size()), 0, 0);
      bool ok = true;
      for (size_t i = 0; i < xs.size(); ++i) {
        const float x = xs[i], y = ys[i];
        if (x == 0.f) ok &= y == -inf;
        else if (x == inf) ok &= y == inf;
        else ok &= std::isnan(y);  // negatives and NaN
      }
      check(ok, "vecmath log special values, " + std::to_string(xs.size()) + " elements");
    }
  }
  // exp's special inputs (NaN once went through a float -> int conversion and a negative shift): NaN -> NaN,
  // -inf and below -104 -> 0, inf and above 88.73 -> inf; sigmoid of NaN is NaN.
  {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    const float specials[] = {nan, -inf, -200.f, -1e30f, inf, 100.f, 1e30f, 0.f};
    const float expect[] = {nan, 0.f, 0.f, 0.f, inf, inf, inf, 1.f};
    for (int64_t len : {int64_t(1), int64_t(7), int64_t(16), int64_t(33)}) {
      std::vector<float> xs(static_cast<size_t>(len) * 8), ys(xs.size()), ss(xs.size());
      for (size_t i = 0; i < xs.size(); ++i) xs[i] = specials[i % 8];
      vm.exp(xs.data(), ys.data(), static_cast<int64_t>(xs.size()));
      vm.sigmoid(xs.data(), ss.data(), static_cast<int64_t>(xs.size()));
      bool ok = true;
      for (size_t i = 0; i < xs.size(); ++i) {
        const float e = expect[i % 8];
        ok &= std::isnan(e) ? std::isnan(ys[i]) && std::isnan(ss[i]) : ys[i] == e;
      }
      check(ok, "vecmath exp special values, " + std::to_string(xs.size()) + " elements");
    }
  }
  // tanh_fast / sigmoid_fast (the recurrent gates, rnn.cpp): absolute error under 3e-7 over [-40, 40] and
  // for every length up to 40 (bodies and tails), results within [-1, 1] / [0, 1], NaN kept, +-inf saturating.
  {
    std::vector<float> xs;
    for (int i = 0; i <= 8000; ++i) xs.push_back(-40.f + 80.f * i / 8000.f);
    std::vector<float> ts(xs.size()), ss(xs.size());
    double worst_t = 0, worst_s = 0;
    bool in_range = true;
    auto score = [&](int64_t len) {
      for (int64_t i = 0; i < len; ++i) {
        const double v = xs[static_cast<size_t>(i)];
        worst_t = std::max(worst_t, std::fabs(ts[static_cast<size_t>(i)] - std::tanh(v)));
        worst_s = std::max(worst_s, std::fabs(ss[static_cast<size_t>(i)] - 1 / (1 + std::exp(-v))));
        in_range &= ts[i] >= -1.f && ts[i] <= 1.f && ss[i] >= 0.f && ss[i] <= 1.f;
      }
    };
    for (int64_t len = 0; len <= 40; ++len) {
      std::fill(ts.begin(), ts.end(), 9.f);
      vm.tanh_fast(xs.data() + 3990, ts.data(), len);  // around 0
      vm.sigmoid_fast(xs.data() + 3990, ss.data(), len);
      for (int64_t i = 0; i < len; ++i) {
        const double v = xs[static_cast<size_t>(3990 + i)];
        worst_t = std::max(worst_t, std::fabs(ts[static_cast<size_t>(i)] - std::tanh(v)));
        worst_s = std::max(worst_s, std::fabs(ss[static_cast<size_t>(i)] - 1 / (1 + std::exp(-v))));
      }
      check(ts[static_cast<size_t>(len)] == 9.f, "vecmath tanh_fast writes past its row");
    }
    vm.tanh_fast(xs.data(), ts.data(), static_cast<int64_t>(xs.size()));
    vm.sigmoid_fast(xs.data(), ss.data(), static_cast<int64_t>(xs.size()));
    score(static_cast<int64_t>(xs.size()));
    check(worst_t < 3e-7, "vecmath tanh_fast absolute error " + std::to_string(worst_t));
    check(worst_s < 3e-7, "vecmath sigmoid_fast absolute error " + std::to_string(worst_s));
    check(in_range, "vecmath tanh_fast / sigmoid_fast out of range");
    const float inf = std::numeric_limits<float>::infinity();
    const float sp[] = {std::numeric_limits<float>::quiet_NaN(), -inf, inf, 0.f, -0.f, 1e30f, -1e30f};
    float t[7], s[7];
    vm.tanh_fast(sp, t, 7);
    vm.sigmoid_fast(sp, s, 7);
    check(std::isnan(t[0]) && std::isnan(s[0]) && t[1] == -1.f && t[2] == 1.f && s[1] == 0.f && s[2] == 1.f &&
              t[3] == 0.f && s[3] == 0.5f && t[5] == 1.f && s[6] == 0.f,
          "vecmath tanh_fast / sigmoid_fast special values");
  }
  // gelu: every length up to 40 (vector bodies and tails): 5e-6 relative or 1e-6 absolute error.
  for (int tanh_approx = 0; tanh_approx < 2; ++tanh_approx) {
    double worst = 0;
    // Error of out[0..len) against gelu(in[0..len)), in units of the allowance.
    auto score = [&](const float* in, const float* out, int64_t len) {
      for (int64_t i = 0; i < len; ++i) {
        const double v = in[i];
        const double ref = tanh_approx ? 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
                                       : 0.5 * v * std::erfc(-v / std::sqrt(2.0));
        worst = std::max(worst, std::min(rel_err(out[i], ref) / 5e-6, std::fabs(out[i] - ref) / 1e-6));
      }
    };
    for (int64_t len = 0; len <= 40; ++len) {
      vm.gelu(x.data() + 1000, y.data(), len, tanh_approx);
      score(x.data() + 1000, y.data(), len);
    }
    vm.gelu(x.data(), y.data(), n, tanh_approx);
    score(x.data(), y.data(), n);
    check(worst <= 1.0, std::string("vecmath gelu") + (tanh_approx ? " tanh" : "") + " error " + std::to_string(worst));
  }
  // softmax / log-softmax / layer norm rows against double references.
  std::mt19937 gen(3);
  for (int64_t len : {1, 2, 7, 15, 16, 17, 31, 33, 128, 1000}) {
    auto row = random_floats(static_cast<size_t>(len), gen, 8.f);
    std::vector<float> out(static_cast<size_t>(len));
    double m = row[0];
    for (float v : row) m = std::max<double>(m, v);
    double s = 0;
    for (float v : row) s += std::exp(v - m);
    for (int lg = 0; lg < 2; ++lg) {
      vm.softmax_row(row.data(), out.data(), len, lg);
      double worst = 0;
      for (int64_t i = 0; i < len; ++i) {
        const double ref = lg ? row[i] - m - std::log(s) : std::exp(row[i] - m) / s;
        worst = std::max(worst, std::fabs(out[i] - ref));
      }
      check(worst < 2e-6, std::string(lg ? "log_softmax" : "softmax") + " row n=" + std::to_string(len));
    }
    auto gamma = random_floats(static_cast<size_t>(len), gen), beta = random_floats(static_cast<size_t>(len), gen);
    float mean = 0, inv = 0;
    vm.layernorm_row(row.data(), out.data(), len, gamma.data(), beta.data(), 1e-5f, &mean, &inv);
    double mu = 0, var = 0;
    for (float v : row) mu += v;
    mu /= len;
    for (float v : row) var += (v - mu) * (v - mu);
    var /= len;
    const double is = 1 / std::sqrt(var + 1e-5);
    double worst = std::fabs(mean - mu) + std::fabs(inv - is) / is;
    for (int64_t i = 0; i < len; ++i) worst = std::max(worst, std::fabs(out[i] - ((row[i] - mu) * is * gamma[i] + beta[i])));
    check(worst < 1e-4, "layernorm row n=" + std::to_string(len));
  }
}

// ---- thread pool --------------------------------------------------------------------------

void test_threadpool() {
  ThreadPool pool(2);
  for (int64_t n : {0, 1, 2, 3, 17, 1000, 100000}) {
    std::vector<int> hits(static_cast<size_t>(n), 0);
    pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
    });
    check(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }),
          "parallel_for covers each index once, n=" + std::to_string(n));
  }
  // Nested loops run inline and still cover everything.
  std::vector<int> hits(64 * 64, 0);
  PoolScope scope(&pool, false);
  parallel_for(64, 1e6, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      parallel_for(64, 1e6, [&](int64_t b2, int64_t e2) {
        for (int64_t j = b2; j < e2; ++j) ++hits[static_cast<size_t>(i * 64 + j)];
      });
  });
  check(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }), "nested parallel_for");
  // An exception from any block (either thread's) reaches the caller after the join; the pool still works.
  for (int64_t bad : {0, 999}) {
    bool caught = false;
    try {
      pool.parallel_for(1000, 1, [&](int64_t b, int64_t e) {
        if (bad >= b && bad < e) throw std::runtime_error("block failed");
      });
    } catch (const std::runtime_error& err) {
      caught = std::string(err.what()) == "block failed";
    }
    check(caught, "parallel_for rethrows a block's exception (index " + std::to_string(bad) + ")");
  }
  std::atomic<int64_t> sum{0};
  pool.parallel_for(1000, 1, [&](int64_t b, int64_t e) { sum += e - b; });
  check(sum.load() == 1000, "parallel_for after an exception");
  // Back-to-back tiny jobs: the caller often finishes before the worker wakes and returns without
  // it; a worker waking late must not join a later job's blocks with an earlier job's state.
  // Every job writes its number into each of its items: an item a job missed (or that a stale
  // worker overwrote with an earlier job's number before the check) is counted.
  ThreadPool pool3(3);
  std::vector<int64_t> tags(8, -1);
  int64_t wrong = 0;
  for (int64_t job = 0; job < 20000; ++job) {
    const int64_t n = 1 + job % 8;
    pool3.parallel_for(n, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) tags[static_cast<size_t>(i)] = job;
    });
    for (int64_t i = 0; i < n; ++i) wrong += tags[static_cast<size_t>(i)] != job;
  }
  check(wrong == 0, "20000 back-to-back tiny jobs on 3 threads: " + std::to_string(wrong) + " items missed");
}

// ---- kernels through the table ---------------------------------------------------------------

std::shared_ptr<Tensor> make_tensor(Shape shape, const std::vector<float>& v) {
  auto t = std::make_shared<Tensor>(Tensor::empty(kFloat, std::move(shape), "test"));
  std::memcpy(t->data, v.data(), v.size() * sizeof(float));
  return t;
}

std::vector<Tensor> run_kernel(const Kernel& k, const std::vector<const Tensor*>& in) {
  std::vector<OutSpec> specs;
  k.infer(in, specs);
  std::vector<Tensor> outs;
  for (const OutSpec& s : specs) outs.push_back(Tensor::empty(s.dtype, s.shape, "test output"));
  std::vector<Tensor*> ptrs;
  for (Tensor& t : outs) ptrs.push_back(&t);
  k.compute(in, ptrs);
  return outs;
}

AttrValue ints(std::vector<int64_t> v) {
  AttrValue a;
  a.kind = AttrValue::kInts;
  a.ints = std::move(v);
  return a;
}

void test_add_kernel() {
  std::mt19937 gen(4);
  KernelArgs args;
  args.op_type = "Add";
  auto k = create_kernel("Add", args);
  for (int64_t n : {1, 5, 16, 17, 768}) {
    auto a = random_floats(static_cast<size_t>(3 * n), gen), b = random_floats(static_cast<size_t>(n), gen);
    auto ta = make_tensor({3, n}, a), tb = make_tensor({n}, b);
    auto out = run_kernel(*k, {ta.get(), tb.get()});
    bool ok = out[0].shape == Shape({3, n});
    for (int64_t i = 0; ok && i < 3 * n; ++i) ok = out[0].ptr<float>()[i] == a[i] + b[i % n];
    check(ok, "Add broadcast [3," + std::to_string(n) + "] + [" + std::to_string(n) + "]");
  }
}

void test_conv_kernel() {
  std::mt19937 gen(5);
  struct Cfg {
    int64_t C, M, group, H, W;
  };
  // 6/6: small; 40 -> 70: crosses the direct kernels' 32-channel K blocks and 64-channel output
  // blocks (and an A tiling's 8-row tail). Each runs with the direct tiling forced to A, to B,
  // and chosen automatically (portable: im2col whatever the setting).
  const Cfg cfgs[] = {{6, 6, 1, 9, 7}, {6, 6, 3, 9, 7}, {6, 6, 6, 9, 7}, {40, 70, 1, 11, 6}, {40, 70, 2, 5, 13}};
  for (const char* tiling : {"a", "b", ""})
  for (const Cfg& cfg : cfgs)
  for (int64_t stride : {1, 2}) {
      if (*tiling) setenv("ONNXFAST_CONV_DIRECT", tiling, 1);
      else unsetenv("ONNXFAST_CONV_DIRECT");
      const int64_t C = cfg.C, M = cfg.M, group = cfg.group, H = cfg.H, W = cfg.W, kh = 3, kw = 3, pad = 1;
      KernelArgs args;
      args.op_type = "Conv";
      args.attrs["strides"] = ints({stride, stride});
      args.attrs["pads"] = ints({pad, pad, pad, pad});
      AttrValue g;
      g.kind = AttrValue::kInt;
      g.i = group;
      args.attrs["group"] = g;
      auto x = random_floats(C * H * W, gen), w = random_floats(M * (C / group) * kh * kw, gen),
           b = random_floats(M, gen);
      auto tx = make_tensor({1, C, H, W}, x), tw = make_tensor({M, C / group, kh, kw}, w), tb = make_tensor({M}, b);
      args.const_inputs = {nullptr, tw, tb};
      auto k = create_kernel("Conv", args);
      auto out = run_kernel(*k, {tx.get(), tw.get(), tb.get()});
      const int64_t OH = (H + 2 * pad - kh) / stride + 1, OW = (W + 2 * pad - kw) / stride + 1;
      bool ok = out[0].shape == Shape({1, M, OH, OW});
      double worst = 0;
      const int64_t cg = C / group, mg = M / group;
      for (int64_t m = 0; ok && m < M; ++m)
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            double s = b[m];
            const int64_t gr = m / mg;
            for (int64_t c = 0; c < cg; ++c)
              for (int64_t i = 0; i < kh; ++i)
                for (int64_t j = 0; j < kw; ++j) {
                  const int64_t ih = oh * stride - pad + i, iw = ow * stride - pad + j;
                  if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                  s += static_cast<double>(x[(gr * cg + c) * H * W + ih * W + iw]) * w[((m * cg + c) * kh + i) * kw + j];
                }
            worst = std::max(worst, std::fabs(out[0].ptr<float>()[(m * OH + oh) * OW + ow] - s));
          }
      check(ok && worst < 1e-4 * std::sqrt(static_cast<double>(cg * kh * kw)),
            "Conv 3x3 " + std::to_string(C) + "->" + std::to_string(M) + " stride " + std::to_string(stride) + " group " +
                std::to_string(group) + " tiling '" + tiling + "' err " + std::to_string(worst));
  }
  unsetenv("ONNXFAST_CONV_DIRECT");
}

// ConvTranspose (conv_transpose.cpp) against a direct scatter in double: strides, asymmetric pads,
// dilations, output_padding, groups (depthwise too), constant and fed weights; 40 input channels
// span several GEMM strips of W^T, 23 x 29 several row runs per position chunk.
void test_conv_transpose_kernel() {
  std::mt19937 gen(7);
  struct Cfg {
    int64_t C, Mg, group, H, W, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, oph, opw;
  };
  const Cfg cfgs[] = {{3, 4, 1, 5, 7, 3, 3, 2, 2, 1, 1, 1, 0, 2, 1, 1, 0},
                      {6, 2, 3, 4, 6, 2, 3, 3, 1, 2, 1, 0, 2, 1, 0, 0, 0},
                      {5, 1, 5, 9, 8, 4, 4, 2, 2, 1, 1, 1, 1, 1, 1, 0, 1},
                      {40, 9, 1, 23, 29, 5, 2, 1, 3, 1, 2, 2, 1, 0, 3, 0, 2}};
  for (const Cfg& c : cfgs)
    for (bool constant : {true, false}) {
      KernelArgs args;
      args.op_type = "ConvTranspose";
      args.node_name = "t";
      args.attrs["strides"] = ints({c.sh, c.sw});
      args.attrs["dilations"] = ints({c.dh, c.dw});
      args.attrs["pads"] = ints({c.pt, c.pl, c.pb, c.pr});
      args.attrs["output_padding"] = ints({c.oph, c.opw});
      AttrValue g;
      g.kind = AttrValue::kInt;
      g.i = c.group;
      args.attrs["group"] = g;
      const int64_t M = c.Mg * c.group, Cg = c.C / c.group, N = 2;
      auto x = random_floats(N * c.C * c.H * c.W, gen), w = random_floats(c.C * c.Mg * c.kh * c.kw, gen),
           b = random_floats(M, gen);
      auto tx = make_tensor({N, c.C, c.H, c.W}, x), tw = make_tensor({c.C, c.Mg, c.kh, c.kw}, w), tb = make_tensor({M}, b);
      args.const_inputs = {nullptr, constant ? tw : nullptr, nullptr};
      auto k = create_kernel("ConvTranspose", args);
      auto out = run_kernel(*k, {tx.get(), tw.get(), tb.get()});
      const int64_t OH = c.sh * (c.H - 1) + (c.kh - 1) * c.dh + 1 + c.oph - c.pt - c.pb;
      const int64_t OW = c.sw * (c.W - 1) + (c.kw - 1) * c.dw + 1 + c.opw - c.pl - c.pr;
      bool ok = out[0].shape == Shape({N, M, OH, OW});
      std::vector<double> ref(static_cast<size_t>(N * M * OH * OW));
      for (int64_t n = 0; ok && n < N; ++n)
        for (int64_t m = 0; m < M; ++m)
          for (int64_t i = 0; i < OH * OW; ++i) ref[(n * M + m) * OH * OW + i] = b[m];
      for (int64_t n = 0; ok && n < N; ++n)
        for (int64_t ci = 0; ci < c.C; ++ci)
          for (int64_t mg = 0; mg < c.Mg; ++mg)
            for (int64_t ih = 0; ih < c.H; ++ih)
              for (int64_t iw = 0; iw < c.W; ++iw)
                for (int64_t i = 0; i < c.kh; ++i)
                  for (int64_t j = 0; j < c.kw; ++j) {
                    const int64_t oh = ih * c.sh + i * c.dh - c.pt, ow = iw * c.sw + j * c.dw - c.pl;
                    if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) continue;
                    const int64_t m = (ci / Cg) * c.Mg + mg;
                    ref[((n * M + m) * OH + oh) * OW + ow] += static_cast<double>(x[((n * c.C + ci) * c.H + ih) * c.W + iw]) *
                                                              w[((ci * c.Mg + mg) * c.kh + i) * c.kw + j];
                  }
      double worst = 0;
      for (size_t i = 0; ok && i < ref.size(); ++i) worst = std::max(worst, std::fabs(out[0].ptr<float>()[i] - ref[i]));
      check(ok && worst < 1e-4 * std::sqrt(static_cast<double>(Cg * c.kh * c.kw)),
            "ConvTranspose " + std::to_string(c.C) + "->" + std::to_string(M) + " group " + std::to_string(c.group) +
                (constant ? " constant" : " fed") + " err " + std::to_string(worst));
    }
}

// ---- reductions, pooling, Transpose ---------------------------------------------------------

void test_reduce_engine() {
  std::mt19937 gen(6);
  struct Case {
    Shape shape;
    std::vector<bool> red;
  };
  const Case cases[] = {{{7, 33}, {false, true}},      {{7, 33}, {true, false}},   {{3, 1, 5, 2}, {true, true, false, true}},
                        {{4, 70000}, {false, true}},   {{40000, 3}, {true, false}}, {{5, 0, 3}, {false, true, false}},
                        {{2, 17, 3, 19}, {true, false, true, false}}};
  for (const Case& c : cases) {
    const int64_t n = shape_numel(c.shape);
    auto x = random_floats(static_cast<size_t>(n), gen);
    int64_t nout = 1, count = 1;
    for (size_t i = 0; i < c.shape.size(); ++i) (c.red[i] ? count : nout) *= c.shape[i];
    // double reference: output index from the kept coordinates in order
    std::vector<double> sum(static_cast<size_t>(nout), 0.0), mx(static_cast<size_t>(nout), -INFINITY);
    for (int64_t i = 0; i < n; ++i) {
      int64_t rem = i, o = 0, mul = 1;
      for (size_t d = c.shape.size(); d-- > 0;) {
        const int64_t idx = rem % c.shape[d];
        rem /= c.shape[d];
        if (!c.red[d]) {
          o += idx * mul;
          mul *= c.shape[d];
        }
      }
      sum[static_cast<size_t>(o)] += x[static_cast<size_t>(i)];
      mx[static_cast<size_t>(o)] = std::max<double>(mx[static_cast<size_t>(o)], x[static_cast<size_t>(i)]);
    }
    std::vector<float> ys(static_cast<size_t>(nout)), ym(static_cast<size_t>(nout)), ys3(static_cast<size_t>(nout));
    reduce_float(ReduceKind::kSum, x.data(), c.shape, c.red, ys.data());
    reduce_float(ReduceKind::kMax, x.data(), c.shape, c.red, ym.data());
    ThreadPool pool(3);
    {
      PoolScope scope(&pool, false);
      reduce_float(ReduceKind::kSum, x.data(), c.shape, c.red, ys3.data());
    }
    bool ok = true;
    for (int64_t o = 0; o < nout; ++o) {
      const size_t k = static_cast<size_t>(o);
      ok = ok && std::fabs(ys[k] - sum[k]) <= 1e-5 * std::sqrt(static_cast<double>(count)) + 1e-6 && ym[k] == mx[k];
    }
    check(ok, "reduce_float sum/max " + shape_str(c.shape));
    check(std::memcmp(ys.data(), ys3.data(), ys.size() * sizeof(float)) == 0,
          "reduce_float 1 and 3 threads bitwise equal " + shape_str(c.shape));
  }
}

void test_pool_kernels() {
  std::mt19937 gen(7);
  const int64_t H = 9, W = 10;
  auto x = random_floats(static_cast<size_t>(2 * H * W), gen);
  auto tx = make_tensor({1, 2, H, W}, x);
  for (int is_max = 0; is_max < 2; ++is_max) {
    KernelArgs args;
    args.op_type = is_max ? "MaxPool" : "AveragePool";
    args.attrs["kernel_shape"] = ints({3, 2});
    args.attrs["strides"] = ints({2, 3});
    args.attrs["pads"] = ints({1, 0, 1, 1});
    auto k = create_kernel(args.op_type, args);
    auto out = run_kernel(*k, {tx.get()});
    const int64_t OH = (H + 2 - 3) / 2 + 1, OW = (W + 1 - 2) / 3 + 1;
    bool ok = out[0].shape == Shape({1, 2, OH, OW});
    for (int64_t c = 0; ok && c < 2; ++c)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double acc = is_max ? -INFINITY : 0.0;
          int64_t n = 0, arg = -1;
          for (int64_t kh = 0; kh < 3; ++kh)
            for (int64_t kw = 0; kw < 2; ++kw) {
              const int64_t ih = oh * 2 - 1 + kh, iw = ow * 3 + kw;
              if (ih < 0 || ih >= H || iw >= W) continue;
              const double v = x[static_cast<size_t>((c * H + ih) * W + iw)];
              if (is_max && v > acc) arg = (c * H + ih) * W + iw;
              acc = is_max ? std::max(acc, v) : acc + v;
              ++n;
            }
          const int64_t at = (c * OH + oh) * OW + ow;
          const double ref = is_max ? acc : acc / static_cast<double>(n);
          ok = ok && std::fabs(out[0].ptr<float>()[at] - ref) < 1e-6;
          if (is_max && out.size() > 1) ok = ok && out[1].ptr<int64_t>()[at] == arg;
        }
    check(ok, args.op_type + " 3x2 stride 2x3 pads 1,0,1,1");
  }
}

void test_transpose_kernel() {
  std::mt19937 gen(8);
  const Shape shape = {3, 17, 1, 70};
  auto x = random_floats(static_cast<size_t>(shape_numel(shape)), gen);
  auto tx = make_tensor(shape, x);
  const std::vector<int64_t> perms[] = {{3, 1, 2, 0}, {0, 3, 2, 1}, {1, 0, 2, 3}, {2, 0, 1, 3}};
  for (const auto& p : perms) {
    KernelArgs args;
    args.op_type = "Transpose";
    args.attrs["perm"] = ints(p);
    auto out = run_kernel(*create_kernel("Transpose", args), {tx.get()});
    bool ok = true;
    for (int64_t i = 0; ok && i < tx->numel(); ++i) {
      int64_t rem = i, off = 0;  // output index i -> input offset
      for (size_t d = 4; d-- > 0;) {
        const int64_t idx = rem % out[0].shape[d];
        rem /= out[0].shape[d];
        int64_t stride = 1;
        for (size_t e = static_cast<size_t>(p[d]) + 1; e < 4; ++e) stride *= shape[e];
        off += idx * stride;
      }
      ok = out[0].ptr<float>()[i] == x[static_cast<size_t>(off)];
    }
    check(ok, "Transpose perm " + std::to_string(p[0]) + std::to_string(p[1]) + std::to_string(p[2]) +
                  std::to_string(p[3]));
  }
}

void test_resize_kernel() {
  // ONNX's resize_upsample_scales_linear / _nearest examples: 2 x 2 -> 4 x 4 (half_pixel).
  auto x = make_tensor({1, 1, 2, 2}, {1, 2, 3, 4});
  auto scales = make_tensor({4}, {1, 1, 2, 2});
  const float linear[16] = {1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4};
  const float nearest[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
  for (const char* mode : {"linear", "nearest"}) {
    KernelArgs args;
    args.op_type = "Resize";
    args.node_name = "n0";
    args.opset = 19;
    args.attrs["mode"].kind = AttrValue::kString;
    args.attrs["mode"].s = mode;
    auto k = create_kernel("Resize", args);
    auto out = run_kernel(*k, {x.get(), nullptr, scales.get()});
    const float* want = std::string(mode) == "linear" ? linear : nearest;
    bool ok = out[0].shape == Shape({1, 1, 4, 4});
    for (int i = 0; ok && i < 16; ++i) ok = out[0].ptr<float>()[i] == want[i];
    check(ok, std::string("Resize ") + mode + " 2x2 -> 4x4");
    bool failed = false;
    try {
      run_kernel(*k, {x.get(), nullptr, nullptr});
    } catch (const Error& e) {
      failed = std::string(e.what()).find("'n0'") != std::string::npos;
    }
    check(failed, "Resize without scales or sizes fails naming the node");
  }
}

}  // namespace

// ---- Block cache --------------------------------------------------------------------------

void test_block_cache() {
  MemoryUser user;  // the cache lives while a session (here: this scope) is open
  // Alignment by size class; a freed large block comes back for the same size class, not another.
  for (size_t n : {size_t(1), size_t(100), size_t(4096), size_t(4097), size_t(70000), size_t(1) << 20}) {
    void* p = alloc_block(n);
    check(p != nullptr, "alloc_block(" + std::to_string(n) + ")");
    const size_t align = n <= 4096 ? 16 : 64;
    check(reinterpret_cast<uintptr_t>(p) % align == 0, "alignment of alloc_block(" + std::to_string(n) + ")");
    std::memset(p, 0xab, n);
    free_block(p, n);
  }
  void* a = alloc_block(size_t(3) << 20);
  free_block(a, size_t(3) << 20);
  void* b = alloc_block((size_t(3) << 20) - 4096);  // same class: (2.5 MiB, 3 MiB]
  check(a == b, "a freed 3 MiB block is reused for the next request of its size class");
  void* c = alloc_block(size_t(3) << 20);
  check(c != b, "a block in use is not handed out twice");
  std::memset(c, 1, size_t(3) << 20);
  free_block(b, (size_t(3) << 20) - 4096);
  free_block(c, size_t(3) << 20);
  {
    ScratchBlock s(size_t(1) << 18);
    check(s.data != nullptr && reinterpret_cast<uintptr_t>(s.data) % 64 == 0, "ScratchBlock is 64-byte aligned");
  }
  // Size classes: 4 per power of two up to 64 MiB, 2 MiB steps above; never smaller than asked.
  check(block_size_class(1) == (size_t(64) << 10) && block_size_class(size_t(64) << 10) == (size_t(64) << 10),
        "smallest size class is 64 KiB");
  check(block_size_class((size_t(64) << 10) + 1) == (size_t(80) << 10), "64 KiB + 1 -> 80 KiB");
  check(block_size_class(size_t(3) << 20) == (size_t(3) << 20), "3 MiB is a class");
  check(block_size_class((size_t(3) << 20) + 1) == (size_t(7) << 19), "3 MiB + 1 -> 3.5 MiB");
  check(block_size_class((size_t(64) << 20) + 1) == (size_t(66) << 20), "64 MiB + 1 -> 66 MiB");
  for (size_t n = 1; n < (size_t(1) << 34); n = n * 3 / 2 + 7) {
    const size_t c = block_size_class(n);
    check(c >= n && c % 4096 == 0 && (n < (size_t(64) << 10) || c - n <= n / 4), "block_size_class(" + std::to_string(n) + ")");
  }
  // Live bytes are counted; the guard refuses past the budget and past the limit.
  const size_t live0 = memory_stats().live_bytes;
  void* d = alloc_block(size_t(5) << 20);
  check(memory_stats().live_bytes == live0 + (size_t(5) << 20), "live bytes count an allocation");
  set_memory_limit(size_t(8) << 20);  // budget 6 MiB: 5 MiB live + 2 MiB more is refused
  bool refused = false;
  try {
    check_allocation(size_t(2) << 20, "test");
  } catch (const Error& e) {
    refused = e.kind() == ErrorKind::kAllocation && std::string(e.what()).find("budget") != std::string::npos;
  }
  check(refused, "live + request past the budget is refused");
  refused = false;
  try {
    check_allocation(size_t(9) << 20, "test");
  } catch (const Error& e) {
    refused = e.kind() == ErrorKind::kAllocation && std::string(e.what()).find("memory limit") != std::string::npos;
  }
  check(refused, "a request past the limit is refused");
  free_block(d, size_t(5) << 20);
  check_allocation(size_t(2) << 20, "test");  // fits again
  set_memory_limit(0);
  check(memory_stats().live_bytes == live0, "live bytes return after free");
  // cgroup v2 parse: the smaller of the leaf and an ancestor.
  auto files = [](const std::string& p, std::string* t) {
    if (p == "/sys/fs/cgroup/a/b/memory.max") *t = "max\n";
    else if (p == "/sys/fs/cgroup/a/memory.max") *t = "1048576\n";
    else return false;
    return true;
  };
  std::optional<size_t> lim = parse_cgroup_memory_limit("0::/a/b\n", "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", files);
  check(lim && *lim == 1048576, "cgroup v2 limit of an ancestor");
}

// ---- the executor, without Python ------------------------------------------------------------

// A C++ host step: y = x + 1 (what a Python step is to the bindings).
struct AddOneStep : HostStep {
  int calls = 0;
  void run(const Step& st, RunState& r) override {
    ++calls;
    const Tensor& x = r.get(st.inputs[0]).t;
    Tensor y = Tensor::empty(kFloat, x.shape, "AddOne output");
    for (int64_t i = 0; i < x.numel(); ++i) y.ptr<float>()[i] = x.ptr<float>()[i] + 1.f;
    r.at(st.outputs[0]) = Value::of_tensor(std::move(y));
  }
};

int g_owner_releases = 0;
void count_owner_release(PyObject*) { ++g_owner_releases; }

template <typename F>
std::string error_of(F f, ErrorKind* kind) {
  try {
    f();
  } catch (const Error& e) {
    *kind = e.kind();
    return e.what();
  }
  return "";
}

void test_executor_plan() {
  std::mt19937 gen(9);
  auto kernel = [](const std::string& op, std::vector<std::shared_ptr<Tensor>> consts = {}) {
    KernelArgs a;
    a.op_type = op;
    a.node_name = op + "_0";
    a.opset = 17;
    a.const_inputs = std::move(consts);
    return std::shared_ptr<Kernel>(create_kernel(op, a));
  };
  // values: 0 W (3x4) and 1 shape [8] are constants; 2 x (2x3) is the input;
  // 3 = x @ W, 4 = 3 + 1 (host step), 5 = relu(4), 6 = reshape(5, [8]) (a view of 5)
  auto w = random_floats(12, gen);
  auto tw = make_tensor({3, 4}, w);
  auto shape = std::make_shared<Tensor>(Tensor::empty(kInt64, {1}, "shape"));
  shape->ptr<int64_t>()[0] = 8;
  Plan plan;
  plan.add_constant(0, Value::of_tensor(*tw));
  plan.add_constant(1, Value::of_tensor(*shape));
  InputSpec in;
  in.name = "x";
  in.value = 2;
  in.dtype = kFloat;
  in.has_shape = true;
  in.dims = {-1, 3};
  plan.add_input(in);
  auto host = std::make_shared<AddOneStep>();
  auto step = [](const std::string& op, std::shared_ptr<Kernel> k, std::vector<int> ins, std::vector<int> outs) {
    Step s;
    s.name = op + "_0";
    s.op_type = op;
    s.kernel = std::move(k);
    s.inputs = std::move(ins);
    s.outputs = std::move(outs);
    return s;
  };
  plan.add_step(step("MatMul", kernel("MatMul", {nullptr, tw}), {2, 0}, {3}));
  Step hs = step("AddOne", nullptr, {3}, {4});
  hs.host = host;
  plan.add_step(hs);
  plan.add_step(step("Relu", kernel("Relu"), {4}, {5}));
  plan.add_step(step("Reshape", kernel("Reshape", {nullptr, shape}), {5, 1}, {6}));
  plan.add_output("y", 6);
  plan.add_output("m", 3);
  plan.finalize(7);
  plan.pool = shared_pool(2);
  check(plan.step(2).release == std::vector<int>{4}, "Relu releases the host step's output");

  auto x = random_floats(6, gen);
  auto reference = [&](std::vector<float>& m, std::vector<float>& y) {
    m.assign(8, 0.f);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 4; ++j)
        for (int k = 0; k < 3; ++k) m[i * 4 + j] += x[i * 3 + k] * w[k * 4 + j];
    y.resize(8);
    for (int i = 0; i < 8; ++i) y[i] = std::max(m[i] + 1.f, 0.f);
  };
  std::vector<float> m_ref, y_ref;
  reference(m_ref, y_ref);

  // A fed buffer owned by the host: the executor hands it back instead of dropping the last reference.
  set_owner_release(&count_owner_release);
  g_owner_releases = 0;
  {
    RunState r = plan.new_run();
    Tensor tx = *make_tensor({2, 3}, x);
    plan.check_input_type(in, tx.dtype, "tensor(float)");
    plan.check_input_shape(in, tx.shape);
    auto owned = std::make_shared<Storage>();
    owned->data = tx.data;
    owned->owner = reinterpret_cast<PyObject*>(&g_owner_releases);  // any non-null token
    owned->external = true;
    Tensor fed = tx;
    fed.storage = owned;
    owned.reset();
    r.at(2) = Value::of_tensor(std::move(fed));
    plan.complete_inputs(r, {true}, {"x"});
    const std::vector<int> outs = plan.all_output_values();
    plan.execute(r, outs, nullptr);
    check(host->calls == 1, "the host step ran once");
    const Tensor& y = r.get(outs[0]).t;
    const Tensor& m = r.get(outs[1]).t;
    bool ok = y.shape == Shape({8}) && m.shape == Shape({2, 4});
    for (int i = 0; ok && i < 8; ++i)
      ok = std::fabs(y.ptr<float>()[i] - y_ref[i]) < 1e-5f && std::fabs(m.ptr<float>()[i] - m_ref[i]) < 1e-5f;
    check(ok, "plan MatMul -> host AddOne -> Relu -> Reshape gives relu(x W + 1)");
    check(r.get(4).kind == Value::kEmpty && r.get(5).kind == Value::kEmpty, "dead intermediates released");
    check(r.get(2).kind == Value::kEmpty && r.deferred.size() == 1 && g_owner_releases == 0,
          "the host-owned input's last reference is deferred, not dropped inside the run");
    r.deferred.clear();
    check(g_owner_releases == 1, "the host releases the deferred buffer");
  }
  set_owner_release(nullptr);

  // Only the steps an output needs run.
  {
    RunState r = plan.new_run();
    r.at(2) = Value::of_tensor(*make_tensor({2, 3}, x));
    plan.execute(r, plan.output_values({"m"}), nullptr);
    check(host->calls == 1 && r.get(3).kind == Value::kTensor, "fetching 'm' runs MatMul alone");
  }
  // Feed and option errors name the problem.
  ErrorKind kind = ErrorKind::kRuntime;
  std::string msg = error_of([&] { plan.output_values({"z"}); }, &kind);
  check(kind == ErrorKind::kInvalidArgument && msg.find("unknown output name 'z'") != std::string::npos &&
            msg.find("['y', 'm']") != std::string::npos,
        "unknown output: " + msg);
  msg = error_of([&] { RunState r = plan.new_run(); plan.complete_inputs(r, {false}, {}); }, &kind);
  check(kind == ErrorKind::kInvalidArgument && msg.find("required inputs ['x'] are missing") != std::string::npos,
        "missing input: " + msg);
  msg = error_of([&] { plan.check_input_shape(in, {2, 5}); }, &kind);
  check(kind == ErrorKind::kInvalidArgument && msg.find("wrong size on axis 1: expected 3, got 5") != std::string::npos,
        "wrong shape: " + msg);
  msg = error_of([&] { plan.check_input_type(in, kInt64, "tensor(int64)"); }, &kind);
  check(kind == ErrorKind::kInvalidType && msg.find("expected tensor(float), got tensor(int64)") != std::string::npos,
        "wrong type: " + msg);
  RunOptions ro;
  ro.terminate = true;
  msg = error_of([&] {
    RunState r = plan.new_run();
    r.at(2) = Value::of_tensor(*make_tensor({2, 3}, x));
    plan.execute(r, plan.all_output_values(), &ro);
  }, &kind);
  check(kind == ErrorKind::kTerminated, "RunOptions.terminate stops the run: " + msg);
  // A kernel's error names the step.
  msg = error_of([&] {
    RunState r = plan.new_run();
    r.at(2) = Value::of_tensor(*make_tensor({2, 5}, random_floats(10, gen)));
    plan.execute(r, plan.all_output_values(), nullptr);
  }, &kind);
  check(msg.find("MatMul") != std::string::npos, "a kernel error names the op: " + msg);
}

// The registry: every kernel file's declarations collected (no conflicts, or kernel_defs() throws),
// found by domain, version and type; float16 reaches MatMul through half.cpp's wrapper.
void test_kernel_registry() {
  const auto& defs = kernel_defs();
  check(defs.size() > 80, "kernel declarations collected: " + std::to_string(defs.size()));
  const KernelDef* add = find_kernel("", "Add", 14, kFloat);
  check(add && add->since == 7, "Add-14 float32 found (declared since 7)");
  check(find_kernel("", "Add", 6, kFloat) == nullptr, "Add-6 (no broadcasting) has no native kernel");
  check(find_kernel("", "Add", 14, kString) == nullptr, "no native string Add");
  const KernelDef* mm16 = find_kernel("", "MatMul", 13, kFloat16);
  const KernelDef* mm32 = find_kernel("", "MatMul", 13, kFloat);
  check(mm16 && mm32 && mm16 != mm32, "float16 MatMul is its own declaration");
  check(find_kernel("", "MatMul", 13, 0) == mm16 && mm16 && mm16->serves_unknown_type,
        "unknown input type: the half wrapper, which forwards float32 to the float32 kernel");
  if (mm16) {
    std::vector<int> rt = run_time_types(*mm16, 13);
    std::sort(rt.begin(), rt.end());
    check(rt == std::vector<int>({kFloat, kFloat16, kBFloat16}), "it computes float, float16 and bfloat16");
  }
  check(find_kernel("", "Add", 14, 0) == add, "unknown input type elsewhere: the float32 kernel");
  check(find_kernel("onnxfast", "FusedMatMul", 1, kFloat) && !find_kernel("", "FusedMatMul", 1, kFloat),
        "fused kernels live in the onnxfast domain");
  const KernelDef* cast = find_kernel("", "Cast", 19, kFloat);
  KernelArgs a;
  a.op_type = "Cast";
  a.attrs["to"].kind = AttrValue::kInt;
  a.attrs["to"].i = kInt64;
  check(cast && cast->accepts && cast->accepts(a), "Cast to int64 is native");
  a.attrs["to"].i = kBFloat16;
  check(cast && !cast->accepts(a), "Cast to bfloat16 runs on numpy");
  const KernelDef* reshape = find_kernel("", "Reshape", 14, kInt8);
  check(reshape && reshape->aliases.size() == 1 && reshape->aliases[0] == std::make_pair(0, 0),
        "Reshape declares its output a view of input 0");
  KernelArgs h;
  h.op_type = "MatMul";
  h.since_version = 13;
  h.input_dtypes = {kFloat16, kFloat16};
  auto k = create_kernel(*mm16, h);
  Tensor x = Tensor::empty(kFloat16, {2, 3}, "test"), w = Tensor::empty(kFloat16, {3, 2}, "test");
  for (int64_t i = 0; i < 6; ++i) {
    static_cast<uint16_t*>(x.data)[i] = 0x3C00;  // 1.0
    static_cast<uint16_t*>(w.data)[i] = 0x4000;  // 2.0
  }
  std::vector<OutSpec> specs;
  k->infer({&x, &w}, specs);
  check(specs.size() == 1 && specs[0].dtype == kFloat16 && specs[0].shape == Shape({2, 2}), "float16 MatMul infers");
}

// A provider's device: tensors allocated by its allocator, bytes moved by its copy functions.
void test_device_allocator() {
  const int dev = device_id("TestDeviceExecutionProvider");
  check(dev > 0 && device_id("CPUExecutionProvider") == 0 && device_id("NoSuch") == -1, "device ids");
  DeviceAllocator* a = device_allocator(dev);
  check(a != nullptr, "the test device has an allocator");
  if (!a) return;
  const auto before = a->stats();
  std::vector<float> host = {1.f, -2.f, 3.5f, 0.f, 7.f}, back(5, 0.f);
  {
    Tensor t = Tensor::empty(kFloat, {5}, "device test", dev);
    check(t.device == dev && t.storage->device == dev, "tensor and storage carry the device");
    check(a->stats().at("allocations") == before.at("allocations") + 1, "allocated by the device allocator");
    copy_between_devices(t.data, dev, host.data(), 0, 20);
    copy_between_devices(back.data(), 0, t.data, dev, 20);
    check(back == host, "host -> device -> host round trip");
  }
  const auto after = a->stats();
  check(after.at("releases") == before.at("releases") + 1 && after.at("live_bytes") == before.at("live_bytes"),
        "released to the device allocator");
  check(after.at("bytes_to_device") - before.at("bytes_to_device") == 20 &&
            after.at("bytes_to_host") - before.at("bytes_to_host") == 20,
        "copies through the device's copy functions");
  check(find_kernel("", "Relu", 14, kFloat, "TestDeviceExecutionProvider") != nullptr &&
            find_kernel("", "Softmax", 13, kFloat, "TestDeviceExecutionProvider") == nullptr,
        "the device's kernels are declared under its provider name");
}

// Memory patterns: the layout never overlaps two allocations alive together, shares memory between
// those that are not, and the arena refuses a slice whose memory is still in use.
void test_memory_pattern() {
  MemRecord rec;
  Storage s[6];
  // (birth, death, bytes): a..c a chain, d lives long, e / f short late ones
  const int spans[6][3] = {{0, 1, 4000}, {1, 2, 4000}, {2, 3, 4000}, {0, 5, 1000}, {4, 5, 3000}, {5, 6, 100}};
  for (int i = 0; i < 6; ++i) rec.allocated(&s[i], spans[i][0], i, spans[i][2]);  // output i: unique keys
  for (int i = 0; i < 6; ++i) rec.freed(&s[i], spans[i][1]);
  Storage survivor;
  rec.allocated(&survivor, 3, 0, 5000);  // alive at the end (a graph output): not placed
  auto p = plan_memory(rec);
  check(p && p->slots.size() == 6, "six allocations placed");
  if (!p) return;
  size_t total = 0;
  for (int i = 0; i < 6; ++i) total += (spans[i][2] + 63) / 64 * 64;
  check(p->arena_bytes < total, "the arena is smaller than the allocations together: " + std::to_string(p->arena_bytes));
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < i; ++j) {
      const auto& x = p->slots[p->slot_of.at(alloc_key(spans[i][0], i))];
      const auto& y = p->slots[p->slot_of.at(alloc_key(spans[j][0], j))];
      const bool together = !(spans[i][1] < spans[j][0] || spans[j][1] < spans[i][0]);
      const bool share = x.offset < y.offset + y.nbytes && y.offset < x.offset + x.nbytes;
      check(!(together && share), "allocations alive together do not share memory");
    }
  check(p->slot_of.count(alloc_key(3, 0)) == 0, "the survivor is not placed");
  MemArena arena(p, true);
  auto a = arena.take(0, 0, 4000);
  check(a != nullptr && arena.take(0, 0, 4000) == nullptr, "a slot is handed out once per run");
  check(arena.take(1, 1, 4001) == nullptr, "another size: no slice");
  auto b = arena.take(1, 1, 4000);
  const auto& sa = p->slots[p->slot_of.at(alloc_key(0, 0))];
  const auto& sc = p->slots[p->slot_of.at(alloc_key(2, 2))];
  const bool a_c_share = sa.offset < sc.offset + sc.nbytes && sc.offset < sa.offset + sa.nbytes;
  check(a_c_share, "a and c, never alive together, share memory");
  check(arena.take(2, 2, 4000) == nullptr, "memory still in use (a alive) is not handed out again");
  a.reset();
  check(arena.take(2, 2, 4000) != nullptr, "once a is gone, its memory serves c");
  check(b != nullptr && b->parent != nullptr, "slices keep the arena alive");
  check(!arena.mostly_unused(), "3 of 6 slots handed out: the arena pays");
  MemArena sparse(p, true);
  auto only = sparse.take(5, 5, 100);
  check(only != nullptr && sparse.mostly_unused(), "1 of 6 slots handed out: mostly unused");
}

int main() {
  std::printf("tier: isa=%s gemm=%s vecmath=%s\n", isa_name(active_isa()), gemm_tier().name, vecmath().name);
  test_sgemm();
  test_sgemm_threads_bitwise();
  test_sgemm_kblock_epilogue();
  test_choose_grid();
  test_platform_caches();
  test_vecmath();
  test_threadpool();
  test_add_kernel();
  test_conv_kernel();
  test_conv_transpose_kernel();
  test_reduce_engine();
  test_pool_kernels();
  test_transpose_kernel();
  test_resize_kernel();
  test_block_cache();
  test_executor_plan();
  test_kernel_registry();
  test_device_allocator();
  test_memory_pattern();
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
