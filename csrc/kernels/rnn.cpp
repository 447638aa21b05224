// Recurrent operators LSTM, GRU and RNN (ai.onnx, float32): every direction (forward, reverse,
// bidirectional), layout 0 ([seq, batch, ...]) and 1 ([batch, seq, ...]), the optional inputs B,
// sequence_lens, initial_h, initial_c and P (peepholes), every output optional, clip, LSTM's
// input_forget, GRU's linear_before_reset and every activation the ONNX spec lists (Relu, Tanh, Sigmoid,
// Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus; names
// case-insensitive, alphas / betas consumed in order by the activations that take them, as
// onnxfast/ops/rnn.py, the numpy reference, does).
//
// Algorithm, with G gates (LSTM 4: i, o, f, c; GRU 3: z, r, h; RNN 1) and hidden size H:
//  1. Input projection for every step and both directions at once, one GEMM:
//     XW[seq*batch, ndir*G*H] = X[seq*batch, input] x W^T + bias, X's rows taken in memory order (either
//     layout: the step / batch row of a projection row is found from the layout), W ([ndir*G*H, input]
//     as one matrix) packed once at creation when it is a constant initializer (else once per run),
//     the bias added in the GEMM's store (GemmEpilogue::col_bias). The bias is Wb + Rb (LSTM, RNN; GRU
//     without linear_before_reset), or Wb + Rb of the z and r gates (GRU with linear_before_reset,
//     whose Rbh is applied inside the reset product).
//  2. Per direction, per step: one GEMM of the state H_prev[batch, H] x R^T[H, G*H] (R packed like W)
//     accumulated into the step's projection rows (beta 1: the sum is rounded once, as projection +
//     product would be), then one fused pass per batch row over those rows, in place: peepholes, clip,
//     the activations, the new cell / hidden state and the Y row. Activations run on vecmath rows for the
//     CPU's tier: Sigmoid and Tanh (and ScaledTanh) through the rational tanh_fast / sigmoid_fast
//     (absolute error < 3e-7; the approximations onnxruntime's recurrent kernels use), HardSigmoid, Elu,
//     Softsign, Softplus and ThresholdedRelu through vecmath's act, Relu, Affine and LeakyRelu a row loop.
//     GRU without linear_before_reset needs r before its candidate's product: its step is two GEMMs,
//     H_prev x [Rz; Rr]^T, then (r * H_prev) x Rh^T; with it, H_prev x R^T goes to a scratch of its own
//     (the candidate's part is scaled by r before it is added).
//  sequence_lens: a batch row past its length keeps its state (Y_h / Y_c end as the state of its last
//  valid step; a row of length 0 keeps its initial state, as the numpy reference: onnxruntime writes
//  zeros there) and outputs zeros in Y; in reverse, its processing starts at its last valid step. Steps
//  where no row is valid skip the GEMM.
// Threads: the batch rows of one direction are independent recurrences, so the (direction, row)
// units are split into one contiguous range per thread, each running every step of its rows
// single-threaded: one parallel region per node instead of two per step (at batch 8, 2 threads the
// per-step regions made the node slower than at 1 thread). A single unit (batch 1, one direction), or
// fewer units than threads on large steps, keeps the per-step split instead: the GEMMs split their
// output columns and the gate pass the rows. The driver's results do not depend on the grid or on
// the number of rows of a product, so every value is computed the same way whatever the thread count.
// Attributes are checked at creation (kernel.h's message form), the input shapes the model declares
// too; the shapes of the fed tensors are checked in infer(). Other element types run on numpy.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../threadpool/threadpool.h"
#include "conv_geometry.h"
#include "gemm.h"
#include "kernel.h"
#include "vecmath.h"

namespace onnxfast {
namespace {

enum class RnnOp { kRNN, kGRU, kLSTM };

// One activation function of the spec, applied in place to a row.
struct RnnAct {
  enum Kind {
    kRelu, kTanh, kSigmoid, kAffine, kLeakyRelu, kThresholdedRelu, kScaledTanh, kHardSigmoid, kElu, kSoftsign,
    kSoftplus
  };
  Kind kind = kTanh;
  float alpha = 0.f, beta = 0.f;

  void apply(float* x, int64_t n) const {
    if (n <= 0) return;
    const VecMath& vm = vecmath();
    switch (kind) {
      case kSigmoid: vm.sigmoid_fast(x, x, n); break;
      case kTanh: vm.tanh_fast(x, x, n); break;
      case kRelu:
        for (int64_t j = 0; j < n; ++j) x[j] = x[j] < 0.f ? 0.f : x[j];  // NaN and -0 kept (ops/math.py)
        break;
      case kAffine:
        for (int64_t j = 0; j < n; ++j) x[j] = x[j] * alpha + beta;
        break;
      case kLeakyRelu:
        for (int64_t j = 0; j < n; ++j) x[j] = x[j] >= 0.f ? x[j] : x[j] * alpha;
        break;
      case kThresholdedRelu: vm.act(ActKind::kThresholdedRelu, x, x, n, alpha, 0.f); break;
      case kScaledTanh:
        for (int64_t j = 0; j < n; ++j) x[j] *= beta;
        vm.tanh_fast(x, x, n);
        for (int64_t j = 0; j < n; ++j) x[j] *= alpha;
        break;
      case kHardSigmoid: vm.act(ActKind::kHardSigmoid, x, x, n, alpha, beta); break;
      case kElu: vm.act(ActKind::kElu, x, x, n, alpha, 0.f); break;
      case kSoftsign: vm.act(ActKind::kSoftsign, x, x, n, 0.f, 0.f); break;
      case kSoftplus: vm.act(ActKind::kSoftplus, x, x, n, 0.f, 0.f); break;
    }
  }
};

// name (lower case), kind, takes alpha, takes beta, default alpha, default beta (rnn.py's _ACTS)
struct ActSpec {
  const char* name;
  RnnAct::Kind kind;
  bool uses_alpha, uses_beta;
  double alpha, beta;
};
const ActSpec kActs[] = {
    {"relu", RnnAct::kRelu, false, false, 0, 0},
    {"tanh", RnnAct::kTanh, false, false, 0, 0},
    {"sigmoid", RnnAct::kSigmoid, false, false, 0, 0},
    {"affine", RnnAct::kAffine, true, true, 1.0, 0.0},
    {"leakyrelu", RnnAct::kLeakyRelu, true, false, 0.01, 0},
    {"thresholdedrelu", RnnAct::kThresholdedRelu, true, false, 1.0, 0},
    {"scaledtanh", RnnAct::kScaledTanh, true, true, 1.0, 1.0},
    {"hardsigmoid", RnnAct::kHardSigmoid, true, true, 0.2, 0.5},
    {"elu", RnnAct::kElu, true, false, 1.0, 0},
    {"softsign", RnnAct::kSoftsign, false, false, 0, 0},
    {"softplus", RnnAct::kSoftplus, false, false, 0, 0},
};

std::string strings_str(const std::vector<std::string>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", '" : "'") + v[i] + "'";
  return s + "]";
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The activations, `defaults.size()` per direction, direction-major (rnn.py's _activations: one list
// for a bidirectional node serves both directions; RNN's schema default of two names for a
// one-direction node takes the first).
std::vector<RnnAct> parse_activations(const KernelArgs& a, const std::vector<std::string>& defaults, int ndir) {
  const size_t per = defaults.size();
  std::vector<std::string> names = attr_strings(a, "activations");
  const std::vector<std::string> given = names;
  if (names.empty())
    for (int d = 0; d < ndir; ++d) names.insert(names.end(), defaults.begin(), defaults.end());
  if (names.size() == per && ndir == 2) names.insert(names.end(), given.begin(), given.end());
  else if (names.size() == 2 * per && ndir == 1) names.resize(per);
  if (names.size() != per * static_cast<size_t>(ndir))
    attr_fail(a, "activations", strings_str(given),
              std::to_string(per) + " name" + (per > 1 ? "s" : "") + " per direction (" + std::to_string(per * ndir) +
                  " for " + (ndir == 2 ? "a bidirectional" : "a one-direction") + " node)");
  const std::vector<double> alphas = attr_floats(a, "activation_alpha");
  const std::vector<double> betas = attr_floats(a, "activation_beta");
  for (double v : alphas)
    if (std::isnan(v)) attr_fail(a, "activation_alpha", list_str(alphas), "numbers (no nan)");
  for (double v : betas)
    if (std::isnan(v)) attr_fail(a, "activation_beta", list_str(betas), "numbers (no nan)");
  std::vector<RnnAct> acts;
  size_t ai = 0, bi = 0;
  for (const std::string& name : names) {
    const std::string low = lower(name);
    const ActSpec* spec = nullptr;
    for (const ActSpec& s : kActs)
      if (low == s.name) spec = &s;
    if (!spec)
      attr_fail(a, "activations", strings_str(given),
                "names of Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, "
                "Softsign or Softplus ('" + name + "' is unknown)");
    RnnAct act;
    act.kind = spec->kind;
    if (spec->uses_alpha) {
      act.alpha = static_cast<float>(ai < alphas.size() ? alphas[ai] : spec->alpha);
      ++ai;
    }
    if (spec->uses_beta) {
      act.beta = static_cast<float>(bi < betas.size() ? betas[bi] : spec->beta);
      ++bi;
    }
    acts.push_back(act);
  }
  return acts;
}

inline void clip_row(float* x, int64_t n, float c) {
  for (int64_t j = 0; j < n; ++j) x[j] = std::min(std::max(x[j], -c), c);
}

class RnnKernel : public Kernel {
 public:
  RnnKernel(const KernelArgs& a, RnnOp op) : op_(op), who_(a.who()) {
    G_ = op == RnnOp::kLSTM ? 4 : op == RnnOp::kGRU ? 3 : 1;
    const std::string dir = expect_known_string(a, "direction", "forward", {"forward", "reverse", "bidirectional"});
    ndir_ = dir == "bidirectional" ? 2 : 1;
    reverse_ = dir == "reverse";
    layout_ = expect_int_in(a, "layout", 0, 0, 1);
    hidden_ = a.has("hidden_size") ? attr_int(a, "hidden_size", 0) : -1;
    if (a.has("hidden_size") && hidden_ < 0)
      attr_fail(a, "hidden_size", std::to_string(hidden_), "a non-negative integer");
    if (a.has("clip")) {
      const double c = attr_float(a, "clip", 0.0);
      if (!(c > 0)) attr_fail(a, "clip", num_str(c), "a positive number");
      clip_ = static_cast<float>(std::min<double>(c, std::numeric_limits<float>::max()));
      has_clip_ = true;
    }
    if (op == RnnOp::kLSTM) input_forget_ = expect_int_in(a, "input_forget", 0, 0, 1) != 0;
    if (op == RnnOp::kGRU) lbr_ = expect_int_in(a, "linear_before_reset", 0, 0, 1) != 0;
    const std::vector<std::string> defaults =
        op == RnnOp::kLSTM ? std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"}
        : op == RnnOp::kGRU ? std::vector<std::string>{"Sigmoid", "Tanh"}
                            : std::vector<std::string>{"Tanh"};
    acts_ = parse_activations(a, defaults, static_cast<int>(ndir_));
    check_declared_shapes(a);
    if (a.allow_prepack && a.const_inputs.size() > 2 && a.const_inputs[1] && a.const_inputs[2]) {
      const Tensor& W = *a.const_inputs[1];
      const Tensor& R = *a.const_inputs[2];
      if (W.dtype == kFloat && R.dtype == kFloat && weights_ok(W.shape, R.shape)) {
        const int64_t H = W.shape[1] / G_;
        w_packed_ = std::make_shared<PackedB>(pack_w(W));
        r_packed_ = std::make_shared<std::vector<PackedB>>(pack_r(R, H));
      }
    }
  }

  std::string describe() const override { return w_packed_ ? "native:prepacked" : "native"; }
  std::vector<int> packed_inputs() const override { return w_packed_ ? std::vector<int>{1, 2} : std::vector<int>{}; }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    Dims d = dims(in);
    out.resize(op_ == RnnOp::kLSTM ? 3 : 2);
    out[0].dtype = kFloat;
    out[0].shape = layout_ == 0 ? Shape{d.seq, ndir_, d.batch, d.H} : Shape{d.batch, d.seq, ndir_, d.H};
    const Shape state = layout_ == 0 ? Shape{ndir_, d.batch, d.H} : Shape{d.batch, ndir_, d.H};
    for (size_t i = 1; i < out.size(); ++i) {
      out[i].dtype = kFloat;
      out[i].shape = state;
    }
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Dims dm = dims(in);
    const int64_t seq = dm.seq, batch = dm.batch, I = dm.I, H = dm.H, GH = G_ * H, ndir = ndir_;
    Tensor* Y = out.size() > 0 ? out[0] : nullptr;
    Tensor* Yh = out.size() > 1 ? out[1] : nullptr;
    Tensor* Yc = op_ == RnnOp::kLSTM && out.size() > 2 ? out[2] : nullptr;
    if (batch == 0 || H == 0) return;  // every output is empty

    // sequence lengths (empty: every row runs all steps)
    std::vector<int64_t> lens;
    if (in.size() > 4 && in[4]) {
      lens = int_values(*in[4], who_, "sequence_lens");
      if (std::all_of(lens.begin(), lens.end(), [&](int64_t v) { return v == seq; })) lens.clear();
    }

    // weights: pre-packed, or packed for this run
    std::shared_ptr<PackedB> wp = w_packed_;
    std::shared_ptr<std::vector<PackedB>> rp = r_packed_;
    if (!wp) {
      wp = std::make_shared<PackedB>(pack_w(*in[1]));
      rp = std::make_shared<std::vector<PackedB>>(pack_r(*in[2], H));
    }

    // the projection's bias (see the header) and GRU's Rbh
    const float* B = in.size() > 3 && in[3] ? in[3]->ptr<float>() : nullptr;
    std::vector<float> pbias, rbh;
    if (B) {
      pbias.resize(static_cast<size_t>(ndir * GH));
      rbh.assign(static_cast<size_t>(ndir * H), 0.f);
      for (int64_t d = 0; d < ndir; ++d) {
        const float* wb = B + d * 2 * GH;
        const float* rb = wb + GH;
        float* pb = pbias.data() + d * GH;
        for (int64_t j = 0; j < GH; ++j) pb[j] = wb[j] + rb[j];
        if (op_ == RnnOp::kGRU && lbr_)
          for (int64_t j = 0; j < H; ++j) {
            pb[2 * H + j] = wb[2 * H + j];
            rbh[static_cast<size_t>(d * H + j)] = rb[2 * H + j];
          }
      }
    }

    // 1. the input projection of every step and direction
    const int64_t ldx = ndir * GH;
    const int64_t nxw = checked_mul(checked_mul(seq, batch, who_, "the input projection"), ldx, who_,
                                    "the input projection");
    std::shared_ptr<Storage> xw_buf = guarded_scratch(std::max<int64_t>(nxw, 1), sizeof(float), who_,
                                                      "the input projection");
    float* xw = static_cast<float*>(xw_buf->data);
    GemmEpilogue ep;
    ep.col_bias = B ? pbias.data() : nullptr;
    sgemm_packed(false, seq * batch, ldx, I, 1.f, in[0]->ptr<float>(), I, *wp, 0.f, xw, ldx, B ? &ep : nullptr);

    // 2. the recurrence, per direction
    Step s;
    s.seq = seq;
    s.batch = batch;
    s.H = H;
    s.ldx = ldx;
    s.xw = xw;
    s.lens = lens.empty() ? nullptr : lens.data();
    s.rbh = B ? rbh.data() : nullptr;
    s.h0 = in.size() > 5 && in[5] ? in[5]->ptr<float>() : nullptr;
    s.c0 = op_ == RnnOp::kLSTM && in.size() > 6 && in[6] ? in[6]->ptr<float>() : nullptr;
    s.P = op_ == RnnOp::kLSTM && in.size() > 7 && in[7] ? in[7]->ptr<float>() : nullptr;
    s.Y = Y ? Y->ptr<float>() : nullptr;
    s.Yh = Yh ? Yh->ptr<float>() : nullptr;
    s.Yc = Yc ? Yc->ptr<float>() : nullptr;
    s.R = rp.get();
    ThreadPool* pool = current_pool();
    const int64_t P = pool ? pool->num_threads() : 1, units = ndir * batch;
    const double step_macs = static_cast<double>(batch) * GH * H;
    if (P > 1 && units >= 2 && seq > 0 && (units >= P || step_macs < 4e6)) {
      // one contiguous range of (direction, row) units per thread; parallel_for inside a task runs inline
      const int64_t chunks = std::min<int64_t>(units, P);
      pool->parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t ci = c0; ci < c1; ++ci) {
          const int64_t u0 = ci * units / chunks, u1 = (ci + 1) * units / chunks;
          for (int64_t u = u0; u < u1;) {  // the range's part in each direction
            const int64_t d = u / batch, b1 = std::min(u1 - d * batch, batch);
            run_direction(s, d, u - d * batch, b1);
            u = d * batch + b1;
          }
        }
      });
    } else {
      for (int64_t d = 0; d < ndir; ++d) run_direction(s, d, 0, batch);
    }
  }

 private:
  struct Dims {
    int64_t seq = 0, batch = 0, I = 0, H = 0;
  };
  // What one direction's recurrence reads and writes.
  struct Step {
    int64_t seq, batch, H, ldx;
    float* xw;
    const int64_t* lens;
    const float* rbh;
    const float *h0, *c0, *P;
    float *Y, *Yh, *Yc;
    const std::vector<PackedB>* R;
  };

  bool weights_ok(const Shape& w, const Shape& r) const {
    if (w.size() != 3 || r.size() != 3 || w[0] != ndir_ || w[1] % G_ != 0) return false;
    const int64_t H = w[1] / G_;
    if (hidden_ >= 0 && hidden_ != H) return false;
    return r == Shape{ndir_, G_ * H, H};
  }

  // W [ndir, G*H, input] as one [ndir*G*H, input] matrix, packed as B^T of the projection.
  PackedB pack_w(const Tensor& W) const {
    return sgemm_pack_b(true, W.shape[2], W.shape[0] * W.shape[1], W.ptr<float>(), W.shape[2]);
  }

  // Per direction, R's gate rows packed as B^T of the step GEMMs: all G*H columns at once, or for GRU
  // without linear_before_reset [Rz; Rr] and Rh apart (two products per step).
  std::vector<PackedB> pack_r(const Tensor& R, int64_t H) const {
    std::vector<PackedB> out;
    const float* r = R.ptr<float>();
    const int64_t GH = G_ * H;
    for (int64_t d = 0; d < ndir_; ++d) {
      const float* rd = r + d * GH * H;
      if (op_ == RnnOp::kGRU && !lbr_) {
        out.push_back(sgemm_pack_b(true, H, 2 * H, rd, H));
        out.push_back(sgemm_pack_b(true, H, H, rd + 2 * H * H, H));
      } else {
        out.push_back(sgemm_pack_b(true, H, GH, rd, H));
      }
    }
    return out;
  }

  // Checks of the shapes the model declares (known dims only), at creation.
  void check_declared_shapes(const KernelArgs& a) const {
    static const char* names[] = {"X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"};
    const size_t ninputs = op_ == RnnOp::kLSTM ? 8 : 6;
    const int64_t ranks[] = {3, 3, 3, 2, 1, 3, 3, 2};
    for (size_t i = 0; i < ninputs; ++i) expect_rank_in(a, i, names[i], ranks[i], ranks[i]);
    // dim k of input i where known, else -1
    auto dim = [&](size_t i, size_t k) -> int64_t {
      if (a.rank_of(i) < 0 || i >= a.input_dims.size() || k >= a.input_dims[i].size()) return -1;
      return a.input_dims[i][k];
    };
    auto refuse = [&](size_t i, const std::string& allowed) {
      std::string s = "(";
      for (size_t k = 0; k < a.input_dims[i].size(); ++k) {
        const int64_t v = a.input_dims[i][k];
        s += (k ? ", " : "") + (v < 0 ? std::string("?") : std::to_string(v));
      }
      input_fail(a, i, names[i], "has shape " + s + (a.input_dims[i].size() == 1 ? ",)" : ")"), allowed);
    };
    auto differs = [&](size_t i, size_t k, int64_t want) { return want >= 0 && dim(i, k) >= 0 && dim(i, k) != want; };
    const std::string nd = std::to_string(ndir_);
    // hidden size: the attribute, else W's or R's dims where known
    int64_t H = hidden_;
    if (H < 0 && dim(1, 1) >= 0 && dim(1, 1) % G_ == 0) H = dim(1, 1) / G_;
    if (H < 0 && dim(2, 2) >= 0) H = dim(2, 2);
    const std::string hs = H >= 0 ? std::to_string(H) : "hidden_size";
    auto times = [&](int64_t k) { return H >= 0 ? std::to_string(k * H) : std::to_string(k) + " x hidden_size"; };
    const int64_t input_size = dim(0, 2);
    // W: (ndir, G*H, input_size)
    if (differs(1, 0, ndir_) || (dim(1, 1) >= 0 && dim(1, 1) % G_ != 0) || differs(1, 1, H >= 0 ? G_ * H : -1) ||
        differs(1, 2, input_size))
      refuse(1, "(" + nd + ", " + times(G_) + ", " +
                    (input_size >= 0 ? std::to_string(input_size) : std::string("input_size")) + ")" +
                    (hidden_ >= 0 ? " for hidden_size " + std::to_string(hidden_) : ""));
    // R: (ndir, G*H, H)
    if (differs(2, 0, ndir_) || differs(2, 1, H >= 0 ? G_ * H : -1) || differs(2, 2, H) ||
        (dim(2, 1) >= 0 && dim(2, 2) >= 0 && dim(2, 1) != G_ * dim(2, 2)))
      refuse(2, "(" + nd + ", " + times(G_) + ", " + hs + ")");
    // B: (ndir, 2*G*H)
    if (differs(3, 0, ndir_) || differs(3, 1, H >= 0 ? 2 * G_ * H : -1))
      refuse(3, "(" + nd + ", " + times(2 * G_) + ")");
    // initial_h / initial_c: (ndir, batch, H), layout 1 (batch, ndir, H)
    for (size_t i = 5; i < ninputs && i <= 6; ++i)
      if (differs(i, layout_ == 0 ? 0 : 1, ndir_) || differs(i, 2, H))
        refuse(i, layout_ == 0 ? "(" + nd + ", batch_size, " + hs + ")" : "(batch_size, " + nd + ", " + hs + ")");
    // P: (ndir, 3*H)
    if (op_ == RnnOp::kLSTM && (differs(7, 0, ndir_) || differs(7, 1, H >= 0 ? 3 * H : -1)))
      refuse(7, "(" + nd + ", " + times(3) + ")");
  }

  // The fed tensors' types and shapes (InvalidArgument / InvalidType naming the node).
  Dims dims(const std::vector<const Tensor*>& in) const {
    if (in.size() < 3 || !in[0] || !in[1] || !in[2]) kernel_fail(who_ + " needs inputs X, W and R");
    static const char* names[] = {"X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"};
    const size_t ninputs = op_ == RnnOp::kLSTM ? 8 : 6;
    if (in.size() > ninputs)
      for (size_t i = ninputs; i < in.size(); ++i)
        if (in[i]) kernel_fail(who_ + " takes at most " + std::to_string(ninputs) + " inputs");
    for (size_t i = 0; i < std::min(in.size(), ninputs); ++i)
      if (in[i] && i != 4) expect_dtype(*in[i], kFloat, (who_ + " input " + names[i]).c_str());
    const Tensor& X = *in[0];
    const Tensor& W = *in[1];
    const Tensor& R = *in[2];
    if (X.rank() != 3) kernel_fail(who_ + ": X of shape " + shape_str(X.shape) + " must be 3-D");
    Dims d;
    d.seq = layout_ == 0 ? X.shape[0] : X.shape[1];
    d.batch = layout_ == 0 ? X.shape[1] : X.shape[0];
    d.I = X.shape[2];
    if (W.rank() != 3 || W.shape[0] != ndir_ || W.shape[2] != d.I || W.shape[1] % G_ != 0)
      kernel_fail(who_ + ": W of shape " + shape_str(W.shape) + " does not match " + std::to_string(ndir_) +
                  " direction(s), " + std::to_string(G_) + " gate(s) and input size " + std::to_string(d.I) +
                  " (expected (" + std::to_string(ndir_) + ", " + std::to_string(G_) + " x hidden_size, " +
                  std::to_string(d.I) + "))");
    d.H = W.shape[1] / G_;
    if (hidden_ >= 0 && hidden_ != d.H)
      kernel_fail(who_ + ": hidden_size " + std::to_string(hidden_) + " does not match W of shape " +
                  shape_str(W.shape) + " (" + std::to_string(G_) + " x hidden_size rows)");
    const int64_t GH = G_ * d.H;
    if (R.shape != Shape{ndir_, GH, d.H})
      kernel_fail(who_ + ": R of shape " + shape_str(R.shape) + ", expected " + shape_str(Shape{ndir_, GH, d.H}));
    if (in.size() > 3 && in[3] && in[3]->shape != Shape{ndir_, 2 * GH})
      kernel_fail(who_ + ": B of shape " + shape_str(in[3]->shape) + ", expected " + shape_str(Shape{ndir_, 2 * GH}));
    if (in.size() > 4 && in[4]) {
      const Tensor& sl = *in[4];
      if (sl.dtype != kInt32 && sl.dtype != kInt64)
        fail(ErrorKind::kInvalidType, who_ + ": sequence_lens has type tensor(" + dtype_name(sl.dtype) +
                                          "), expected tensor(int32)");
      if (sl.rank() != 1 || sl.shape[0] != d.batch)
        kernel_fail(who_ + ": sequence_lens of shape " + shape_str(sl.shape) + " must have one entry per batch row (" +
                    shape_str(Shape{d.batch}) + ")");
      for (int64_t v : int_values(sl, who_, "sequence_lens"))
        if (v < 0 || v > d.seq)
          kernel_fail(who_ + ": sequence_lens value " + std::to_string(v) + " must lie in [0, " +
                      std::to_string(d.seq) + "] (the sequence length)");
    }
    const Shape state = layout_ == 0 ? Shape{ndir_, d.batch, d.H} : Shape{d.batch, ndir_, d.H};
    for (size_t i = 5; i <= 6 && i < std::min(in.size(), ninputs); ++i)
      if (in[i] && in[i]->shape != state)
        kernel_fail(who_ + ": " + names[i] + " of shape " + shape_str(in[i]->shape) + ", expected " + shape_str(state));
    if (op_ == RnnOp::kLSTM && in.size() > 7 && in[7] && in[7]->shape != Shape{ndir_, 3 * d.H})
      kernel_fail(who_ + ": P of shape " + shape_str(in[7]->shape) + ", expected " + shape_str(Shape{ndir_, 3 * d.H}));
    return d;
  }

  // One direction's recurrence over batch rows [b0, b1) (see the header). The state buffers hold
  // those rows only (index b - b0); the projection rows, Y and the states are indexed by b.
  void run_direction(const Step& s, int64_t d, int64_t b0, int64_t b1) const {
    const int64_t seq = s.seq, batch = b1 - b0, H = s.H, GH = G_ * H, ndir = ndir_, all = s.batch;
    const bool rev = reverse_ || d == 1;
    const bool lstm = op_ == RnnOp::kLSTM, gru = op_ == RnnOp::kGRU;
    const RnnAct* act = acts_.data() + d * (lstm ? 3 : gru ? 2 : 1);
    // scratch: h, c (LSTM), r * h (GRU), GRU linear_before_reset's h_prev R^T (batch x 3H)
    const bool sep = gru && lbr_;
    const int64_t nscratch =
        checked_mul(batch, H * (1 + (lstm ? 1 : 0) + (gru ? 1 : 0)) + (sep ? GH : 0), who_, "the state");
    std::shared_ptr<Storage> buf = guarded_scratch(nscratch, sizeof(float), who_, "the recurrent state");
    float* h = static_cast<float*>(buf->data);
    float* c = lstm ? h + batch * H : nullptr;
    float* rh = gru ? h + batch * H : nullptr;
    float* hr = sep ? rh + batch * H : nullptr;
    // initial state: (ndir, batch, H) or (batch, ndir, H)
    auto state_row = [&](int64_t b) { return layout_ == 0 ? (d * all + b) * H : (b * ndir + d) * H; };
    for (int64_t b = 0; b < batch; ++b) {
      if (s.h0) std::memcpy(h + b * H, s.h0 + state_row(b0 + b), sizeof(float) * H);
      else std::memset(h + b * H, 0, sizeof(float) * H);
      if (lstm) {
        if (s.c0) std::memcpy(c + b * H, s.c0 + state_row(b0 + b), sizeof(float) * H);
        else std::memset(c + b * H, 0, sizeof(float) * H);
      }
    }
    // Step t's projection rows (this direction's G*H columns): the recurrent products add into them
    // (beta 1), and the gate pass works on them in place. Row b of step t: xw_t + b * ldb.
    // (local row b: global row b0 + b)
    float* xw_d = s.xw + d * GH;
    const int64_t ldb = layout_ == 0 ? s.ldx : seq * s.ldx;
    auto xw_step = [&](int64_t t) { return xw_d + (layout_ == 0 ? t * all + b0 : t + b0 * seq) * s.ldx; };
    auto y_row = [&](int64_t t, int64_t b) {
      b += b0;
      return s.Y + (layout_ == 0 ? ((t * ndir + d) * all + b) : ((b * seq + t) * ndir + d)) * H;
    };
    const float* P = s.P ? s.P + d * 3 * H : nullptr;
    const float* rbh = s.rbh ? s.rbh + d * H : nullptr;
    const PackedB* rp = s.R->data() + d * (gru && !lbr_ ? 2 : 1);
    const double row_cost = 12.0 * GH;
    for (int64_t step = 0; step < seq; ++step) {
      const int64_t t = rev ? seq - 1 - step : step;
      auto valid = [&](int64_t b) { return !s.lens || t < s.lens[b0 + b]; };
      bool any = !s.lens;
      for (int64_t b = 0; b < batch && !any; ++b) any = valid(b);
      if (!any) {
        if (s.Y)
          for (int64_t b = 0; b < batch; ++b) std::memset(y_row(t, b), 0, sizeof(float) * H);
        continue;
      }
      float* xt = xw_step(t);
      // the recurrent product(s): h_prev R^T added to the projection (GRU linear_before_reset: apart)
      if (sep) sgemm_packed(false, batch, GH, H, 1.f, h, H, rp[0], 0.f, hr, GH);
      else sgemm_packed(false, batch, rp[0].N, H, 1.f, h, H, rp[0], 1.f, xt, ldb);
      if (gru && !lbr_) {
        // z, r first; then the candidate's product over r * h, added to its projection
        parallel_for(batch, row_cost, [&](int64_t r0, int64_t r1) {
          for (int64_t b = r0; b < r1; ++b) {
            float* g = xt + b * ldb;
            if (has_clip_) clip_row(g, 2 * H, clip_);
            act[0].apply(g, 2 * H);
            const float* r = g + H;
            const float* hb = h + b * H;
            float* o = rh + b * H;
            for (int64_t j = 0; j < H; ++j) o[j] = r[j] * hb[j];
          }
        });
        sgemm_packed(false, batch, H, H, 1.f, rh, H, rp[1], 1.f, xt + 2 * H, ldb);
      }
      parallel_for(batch, row_cost, [&](int64_t r0, int64_t r1) {
        for (int64_t b = r0; b < r1; ++b) {
          if (!valid(b)) {
            if (s.Y) std::memset(y_row(t, b), 0, sizeof(float) * H);
            continue;
          }
          float* g = xt + b * ldb;
          float* hb = h + b * H;
          if (lstm) lstm_row(g, hb, c + b * H, P, act, H);
          else if (gru) gru_row(g, sep ? hr + b * GH : nullptr, hb, rbh, act, H);
          else {
            if (has_clip_) clip_row(g, H, clip_);
            act[0].apply(g, H);
            std::memcpy(hb, g, sizeof(float) * H);
          }
          if (s.Y) std::memcpy(y_row(t, b), hb, sizeof(float) * H);
        }
      });
    }
    for (int64_t b = 0; b < batch; ++b) {
      if (s.Yh) std::memcpy(s.Yh + state_row(b0 + b), h + b * H, sizeof(float) * H);
      if (s.Yc) std::memcpy(s.Yc + state_row(b0 + b), c + b * H, sizeof(float) * H);
    }
  }

  // LSTM row: g holds the gates' pre-activations (i, o, f, c) without peepholes; h and c are updated.
  void lstm_row(float* g, float* h, float* c, const float* P, const RnnAct* act, int64_t H) const {
    const int64_t GH = 4 * H;
    float *gi = g, *go = g + H, *gf = g + 2 * H, *gc = g + 3 * H;
    if (P) {
      const float *pi = P, *pf = P + 2 * H;
      for (int64_t j = 0; j < H; ++j) {
        gi[j] += pi[j] * c[j];
        gf[j] += pf[j] * c[j];
      }
    }
    if (has_clip_) {
      if (P) {  // o is clipped after its peephole term, below
        clip_row(gi, H, clip_);
        clip_row(gf, 2 * H, clip_);  // f and c
      } else {
        clip_row(g, GH, clip_);
      }
    }
    if (!P && !input_forget_) {
      act[0].apply(g, 3 * H);  // i, o, f in one call
    } else {
      act[0].apply(gi, H);
      if (input_forget_)
        for (int64_t j = 0; j < H; ++j) gf[j] = 1.f - gi[j];
      else
        act[0].apply(gf, H);
    }
    act[1].apply(gc, H);
    for (int64_t j = 0; j < H; ++j) c[j] = gf[j] * c[j] + gi[j] * gc[j];
    if (P) {
      const float* po = P + H;
      for (int64_t j = 0; j < H; ++j) go[j] += po[j] * c[j];
      if (has_clip_) clip_row(go, H, clip_);
      act[0].apply(go, H);
    } else if (input_forget_) {
      act[0].apply(go, H);
    }
    std::memcpy(gc, c, sizeof(float) * H);
    act[2].apply(gc, H);
    for (int64_t j = 0; j < H; ++j) h[j] = go[j] * gc[j];
  }

  // GRU row: g holds the projection of z, r, h plus the recurrent products. Without linear_before_reset,
  // z and r are activated already and the candidate's pre-activation is complete; with it, hr holds
  // h_prev R^T (z, r, h), added here: z, r = f(x + hr), candidate = g(x_h + r * (hr_h + Rbh)).
  void gru_row(float* g, const float* hr, float* h, const float* rbh, const RnnAct* act, int64_t H) const {
    float *z = g, *r = g + H, *gh = g + 2 * H;
    if (hr) {
      for (int64_t j = 0; j < 2 * H; ++j) g[j] += hr[j];
      if (has_clip_) clip_row(g, 2 * H, clip_);
      act[0].apply(g, 2 * H);
      const float* hh = hr + 2 * H;
      if (rbh)
        for (int64_t j = 0; j < H; ++j) gh[j] += r[j] * (hh[j] + rbh[j]);
      else
        for (int64_t j = 0; j < H; ++j) gh[j] += r[j] * hh[j];
    }
    if (has_clip_) clip_row(gh, H, clip_);
    act[1].apply(gh, H);
    for (int64_t j = 0; j < H; ++j) h[j] = (1.f - z[j]) * gh[j] + z[j] * h[j];
  }

  RnnOp op_;
  std::string who_;
  int64_t G_ = 1, ndir_ = 1, layout_ = 0, hidden_ = -1;
  bool reverse_ = false, has_clip_ = false, input_forget_ = false, lbr_ = false;
  float clip_ = 0.f;
  std::vector<RnnAct> acts_;
  std::shared_ptr<PackedB> w_packed_;
  std::shared_ptr<std::vector<PackedB>> r_packed_;
};

// Inputs other than X of type float32 (or unknown at creation), sequence_lens int32 / int64: the others
// run on numpy.
bool float_rnn_inputs(const KernelArgs& a) {
  for (size_t i = 1; i < a.input_dtypes.size(); ++i) {
    const int t = a.dtype_of(i);
    if (t == 0) continue;
    if (i == 4 ? (t != kInt32 && t != kInt64) : t != kFloat) return false;
  }
  return true;
}

}  // namespace

ONNXFAST_KERNELS(rnn) {
  kernel("LSTM").since(1).types({kFloat}).when(float_rnn_inputs).make([](const KernelArgs& a) {
    return std::make_unique<RnnKernel>(a, RnnOp::kLSTM);
  });
  kernel("GRU").since(1).types({kFloat}).when(float_rnn_inputs).make([](const KernelArgs& a) {
    return std::make_unique<RnnKernel>(a, RnnOp::kGRU);
  });
  kernel("RNN").since(1).types({kFloat}).when(float_rnn_inputs).make([](const KernelArgs& a) {
    return std::make_unique<RnnKernel>(a, RnnOp::kRNN);
  });
}

}  // namespace onnxfast
