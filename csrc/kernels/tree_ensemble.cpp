// Tree ensembles of ai.onnx.ml: TreeEnsembleRegressor and TreeEnsembleClassifier (opsets 1 and 3, the
// `*_as_tensor` attributes included) and TreeEnsemble (ai.onnx.ml 5). One evaluator serves all three.
//
// Prepared once at session creation: each operator's attributes are read into a neutral form (RawNode),
// checked (ids in range, every child present, no node reached twice, so no cycle), and laid out tree by
// tree in breadth-first order. A leaf becomes a "parking" node whose two children are itself, so a walk of
// a tree's depth steps always ends on its leaf: rows are walked eight at a time in lockstep without a
// branch per step (the eight independent chains hide the load latency). Every comparison mode (LEQ, LT,
// GTE, GT, EQ, NEQ, MEMBER) folds its missing-value track into the mode (LEQ with NaN-goes-true is
// !(x > t)), and an ensemble whose nodes all compare alike (LEQ: scikit-learn, LightGBM; LT: XGBoost)
// takes a loop without the mode switch.
//
// Thresholds are compared in float32 for float32 and integer inputs, in float64 for float64 inputs, as
// onnxruntime does. Sums are formed in float64 over fixed chunks of kChunk trees, chunk sums added in
// order: rows in parallel (blocks sized to keep a block's features in L1) or, for few rows, chunks in
// parallel, and the result is bitwise the same for every thread count. Final scores follow onnxruntime's
// conventions (base values, the binary-class score, post transforms; see ml_common.h), with one
// deliberate difference: a two-class classifier whose weights score both classes predicts the class of
// the larger score (onnxruntime 1.32 returns the literal label 1 or 0 there, whatever the labels are).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>

#include "../threadpool/threadpool.h"
#include "kernel.h"
#include "ml_common.h"

namespace onnxfast {
namespace {

using ml::Post;

constexpr int kChunk = 16;  // trees per partial sum (fixes the order of the float64 additions)
constexpr int kLanes = 8;   // rows walked together

enum Agg { kAverage = 0, kSum = 1, kMin = 2, kMax = 3 };

// Comparison modes with the missing-value track folded in (the _M forms send NaN to the true child).
enum Mode : uint8_t { kLeq, kLeqM, kLt, kLtM, kGte, kGteM, kGt, kGtM, kEq, kEqM, kNeq, kMember, kMemberM, kLeaf };

struct RawNode {
  int64_t feat = 0;
  int mode = kLeaf;  // 0..6: LEQ, LT, GTE, GT, EQ, NEQ, MEMBER; kLeaf
  double thr = 0;
  int64_t child[2] = {-1, -1};  // [false, true]: raw node indices
  bool missing_true = false;
  int64_t member_set = -1;
  std::vector<std::pair<int64_t, double>> weights;  // leaves: (target, weight)
};

// The operator-independent description every parser produces.
struct RawEnsemble {
  std::vector<RawNode> nodes;
  std::vector<int64_t> roots;
  std::vector<std::vector<double>> member_sets;
  int64_t n_targets = 1;
  Agg agg = kSum;
  Post post = Post::kNone;
  std::vector<double> base;
};

template <class T>
struct Node {
  T thr;
  uint32_t feat_mode;   // feature index (low 24 bits), Mode (high 8)
  int32_t child[2];     // [false, true]
  uint32_t feat() const { return feat_mode & 0xFFFFFFu; }
  uint8_t mode() const { return static_cast<uint8_t>(feat_mode >> 24); }
};

template <class T>
inline bool in_set(const std::vector<T>& s, T x) {
  return !std::isnan(x) && std::binary_search(s.begin(), s.end(), x);  // NaN compares equal to nothing
}

// The laid-out ensemble in threshold type T.
template <class T>
struct Forest {
  std::vector<Node<T>> nodes;
  std::vector<int32_t> roots, depth, min_depth;  // per tree: first node, longest and shortest walk
  std::vector<int32_t> node_leaf;     // per node: leaf index of a parking node, -1 otherwise
  std::vector<int32_t> node_set;      // per node: membership set (MEMBER modes), -1 otherwise
  std::vector<std::vector<T>> sets;
  int family = 0;  // 1: every comparison is BRANCH_LEQ, 2: every one BRANCH_LT (missing tracks aside), 0: mixed
  int64_t max_feat = -1;

  // One step of an ensemble of one comparison (kFamily 1: BRANCH_LEQ, 2: BRANCH_LT; with or without the
  // missing-value track), without the mode switch; kFamily 0: any mode.
  template <int kFamily>
  inline int32_t step_as(int32_t idx, const Node<T>& n, const T* row) const {
    if (kFamily == 0) return step(idx, row);
    const T x = row[n.feat()];
    if (kFamily == 1) return n.child[(x <= n.thr) | ((n.mode() == kLeqM) & std::isnan(x))];
    return n.child[(x < n.thr) | ((n.mode() == kLtM) & std::isnan(x))];
  }

  inline int32_t step(int32_t idx, const T* row) const {
    const Node<T>& n = nodes[idx];
    const T x = row[n.feat()];
    bool c;
    switch (n.mode()) {
      case kLeq: c = x <= n.thr; break;
      case kLeqM: c = !(x > n.thr); break;
      case kLt: c = x < n.thr; break;
      case kLtM: c = !(x >= n.thr); break;
      case kGte: c = x >= n.thr; break;
      case kGteM: c = !(x < n.thr); break;
      case kGt: c = x > n.thr; break;
      case kGtM: c = !(x <= n.thr); break;
      case kEq: c = x == n.thr; break;
      case kEqM: c = x == n.thr || std::isnan(x); break;
      case kNeq: c = x != n.thr; break;
      case kMember: c = in_set(sets[node_set[idx]], x); break;
      case kMemberM: c = std::isnan(x) || in_set(sets[node_set[idx]], x); break;
      default: c = false; break;  // parking node: both children are itself
    }
    return n.child[c];
  }
};

class TreeEnsembleKernel : public Kernel {
 public:
  TreeEnsembleKernel(const KernelArgs& a, RawEnsemble raw, bool classifier, std::vector<int64_t> labels)
      : who_(a.who()), classifier_(classifier), labels_(std::move(labels)), opset5_(a.op_type == "TreeEnsemble") {
    n_targets_ = raw.n_targets;
    agg_ = raw.agg;
    post_ = raw.post;
    base_ = raw.base;
    if (classifier_) {
      if (!base_.empty() && base_.size() != static_cast<size_t>(n_targets_) && !(n_targets_ == 2 && base_.size() == 1))
        attr_fail(a, "base_values", std::to_string(base_.size()) + " values",
                  "one per class (" + std::to_string(n_targets_) + ") or none");
    } else if (!base_.empty() && base_.size() != static_cast<size_t>(n_targets_) && base_.size() != 1) {
      attr_fail(a, "base_values", std::to_string(base_.size()) + " values",
                "one per target (" + std::to_string(n_targets_) + "), one, or none");
    }
    build(a, raw);
  }

  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override {
    if (in.empty() || !in[0]) kernel_fail(who_ + " needs input X");
    const Tensor& X = *in[0];
    const int t = X.dtype;
    if (t != kFloat && t != kDouble && t != kInt64 && t != kInt32)
      fail(ErrorKind::kInvalidType, who_ + ": X must be float, double, int64 or int32, got tensor(" +
                                        dtype_name(t) + ")");
    int64_t n, f;
    rows_features(X, n, f);
    if (max_feat_ >= f)
      fail(ErrorKind::kInvalidArgument, who_ + ": a node tests feature " + std::to_string(max_feat_) +
                                            " of an input with " + std::to_string(f) + " features");
    if (classifier_) {
      out.resize(2);
      out[0] = {kInt64, {n}};
      out[1] = {kFloat, {n, n_targets_}};
    } else {
      out.resize(1);
      out[0] = {opset5_ && t == kDouble ? kDouble : kFloat, {n, n_targets_}};
    }
  }

  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override {
    const Tensor& X = *in[0];
    int64_t n, f;
    rows_features(X, n, f);
    if (n == 0) return;
    if (X.dtype == kDouble) {
      run<double>(fd_, static_cast<const double*>(X.data), n, f, out);
    } else if (X.dtype == kFloat) {
      run<float>(ff_, static_cast<const float*>(X.data), n, f, out);
    } else {  // integers: compared as float32, like onnxruntime
      ScratchBlock buf(static_cast<size_t>(n * f) * sizeof(float));
      if (!buf.data) fail(ErrorKind::kAllocation, who_ + ": out of memory converting X");
      float* xf = buf.floats();
      for (int64_t i = 0; i < n * f; ++i)
        xf[i] = X.dtype == kInt64 ? static_cast<float>(static_cast<const int64_t*>(X.data)[i])
                                  : static_cast<float>(static_cast<const int32_t*>(X.data)[i]);
      run<float>(ff_, xf, n, f, out);
    }
  }

 private:
  void rows_features(const Tensor& X, int64_t& n, int64_t& f) const {
    if (X.rank() == 0) fail(ErrorKind::kInvalidArgument, who_ + ": X must have rank 1 or 2, got a scalar");
    if (X.rank() == 1) {
      n = 1;
      f = X.shape[0];
    } else {
      n = X.shape[0];
      f = n ? X.numel() / n : shape_numel(Shape(X.shape.begin() + 1, X.shape.end()));
    }
  }

  // ---- preparation ----
  void build(const KernelArgs& a, const RawEnsemble& raw) {
    const int64_t nn = static_cast<int64_t>(raw.nodes.size());
    for (int64_t k = 0; k < nn; ++k) {
      const RawNode& r = raw.nodes[k];
      if (r.mode == kLeaf) continue;
      if (r.feat < 0 || r.feat >= (1 << 24))
        fail(ErrorKind::kInvalidModel, who_ + ": node " + std::to_string(k) + " tests feature " +
                                           std::to_string(r.feat) + "; it must be in [0, 2^24)");
      for (int c = 0; c < 2; ++c)
        if (r.child[c] < 0 || r.child[c] >= nn)
          fail(ErrorKind::kInvalidModel, who_ + ": node " + std::to_string(k) + " points to a " +
                                             (c ? "true" : "false") + " child that does not exist");
      max_feat_ = std::max(max_feat_, r.feat);
    }
    for (const RawNode& r : raw.nodes)
      for (const auto& w : r.weights)
        if (w.first < 0 || w.first >= n_targets_)
          fail(ErrorKind::kInvalidModel, who_ + ": a leaf weight is for " + std::string(classifier_ ? "class" : "target") +
                                             " " + std::to_string(w.first) + " of " + std::to_string(n_targets_));
    // leaves: compacted, in the order the walk meets them
    std::vector<int32_t> leaf_id(nn, -1), placed(nn, -1);
    n_trees_ = static_cast<int64_t>(raw.roots.size());
    std::vector<int32_t> order;  // raw index per laid-out node
    std::vector<int32_t> roots, depth, min_depth;
    bool single = true;
    for (int64_t t = 0; t < n_trees_; ++t) {
      const int64_t root = raw.roots[t];
      if (root < 0 || root >= nn)
        fail(ErrorKind::kInvalidModel, who_ + ": tree " + std::to_string(t) + "'s root does not exist");
      // breadth-first; interior nodes may be reached once only (no cycle, no sharing), leaves any number of times
      const int32_t first = static_cast<int32_t>(order.size());
      std::vector<std::pair<int64_t, int32_t>> level{{root, 0}};
      int32_t maxd = 0, mind = -1;
      for (size_t q = 0; q < level.size(); ++q) {
        const int64_t k = level[q].first;
        const int32_t d = level[q].second;
        const RawNode& r = raw.nodes[k];
        if (r.mode == kLeaf) {
          if (placed[k] >= first) continue;  // this tree's parking node exists already
        } else if (placed[k] >= 0) {
          fail(ErrorKind::kInvalidModel, who_ + ": node " + std::to_string(k) +
                                             " is reached twice (a cycle, or a node shared between trees or parents)");
        }
        if (d > 100000) fail(ErrorKind::kInvalidModel, who_ + ": a tree is deeper than 100000 levels");
        placed[k] = static_cast<int32_t>(order.size());
        order.push_back(static_cast<int32_t>(k));
        maxd = std::max(maxd, d);
        if (r.mode != kLeaf) {
          level.push_back({r.child[0], d + 1});
          level.push_back({r.child[1], d + 1});
        } else if (mind < 0) {
          mind = d;  // breadth-first: the first leaf met is the shallowest
        }
        if (r.mode == kLeaf && leaf_id[k] < 0) {
          leaf_id[k] = static_cast<int32_t>(leaf_start_.size());
          leaf_start_.push_back(static_cast<int32_t>(leaf_target_.size()));
          for (const auto& w : r.weights) {
            leaf_target_.push_back(static_cast<int32_t>(w.first));
            leaf_weight_.push_back(w.second);
          }
          if (r.weights.size() != 1 || r.weights[0].first != 0) single = false;
        }
      }
      roots.push_back(first);
      depth.push_back(maxd);
      min_depth.push_back(std::max(mind, 0));
      total_depth_ += maxd;
    }
    leaf_start_.push_back(static_cast<int32_t>(leaf_target_.size()));
    single_ = single && n_targets_ >= 1;
    if (order.size() >= (1u << 31)) fail(ErrorKind::kInvalidModel, who_ + ": too many nodes");
    for (const auto& w : leaf_weight_)
      if (w < 0) weights_positive_ = false;
    // classes the weights name (the binary convention applies when they name one class of two)
    std::vector<char> named(static_cast<size_t>(n_targets_), 0);
    for (int32_t t : leaf_target_) named[t] = 1;
    int named_count = 0;
    for (char c : named) named_count += c;
    binary_case_ = classifier_ && n_targets_ == 2 && named_count == 1;
    fill(ff_, raw, order, roots, depth, min_depth, leaf_id);
    fill(fd_, raw, order, roots, depth, min_depth, leaf_id);
    (void)a;
  }

  template <class T>
  void fill(Forest<T>& F, const RawEnsemble& raw, const std::vector<int32_t>& order, const std::vector<int32_t>& roots,
            const std::vector<int32_t>& depth, const std::vector<int32_t>& min_depth, const std::vector<int32_t>& leaf_id) {
    const size_t m = order.size();
    F.nodes.resize(m);
    F.node_leaf.assign(m, -1);
    F.roots = roots;
    F.depth = depth;
    F.min_depth = min_depth;
    F.max_feat = max_feat_;
    bool any_member = false;
    int fam_seen = -1;
    for (size_t i = 0; i < m; ++i) {
      const RawNode& r = raw.nodes[order[i]];
      Node<T>& n = F.nodes[i];
      if (r.mode == kLeaf) {
        n.thr = 0;
        n.feat_mode = static_cast<uint32_t>(kLeaf) << 24;
        n.child[0] = n.child[1] = static_cast<int32_t>(i);
        F.node_leaf[i] = leaf_id[order[i]];
        continue;
      }
      static const uint8_t base_mode[7] = {kLeq, kLt, kGte, kGt, kEq, kNeq, kMember};
      uint8_t md = base_mode[r.mode];
      if (r.missing_true && md != kNeq) md = static_cast<uint8_t>(md + 1);
      const int fam = (md == kLeq || md == kLeqM) ? 1 : (md == kLt || md == kLtM) ? 2 : 0;
      fam_seen = fam_seen < 0 ? fam : (fam_seen == fam ? fam : 0);
      if (md == kMember || md == kMemberM) any_member = true;
      n.thr = static_cast<T>(r.thr);
      n.feat_mode = static_cast<uint32_t>(r.feat) | (static_cast<uint32_t>(md) << 24);
    }
    F.family = fam_seen < 0 ? 1 : fam_seen;
    // children: the laid-out index of a raw node within the same tree (a leaf is parked once per tree)
    size_t t = 0;
    std::map<int64_t, int32_t> where;
    for (size_t i = 0; i < m; ++i) {
      if (t < roots.size() && static_cast<int32_t>(i) == roots[t]) {
        where.clear();
        const size_t tree_end = t + 1 < roots.size() ? static_cast<size_t>(roots[t + 1]) : m;
        for (size_t j = i; j < tree_end; ++j) where[order[j]] = static_cast<int32_t>(j);
        ++t;
      }
      const RawNode& r = raw.nodes[order[i]];
      if (r.mode == kLeaf) continue;
      F.nodes[i].child[0] = where.at(r.child[0]);
      F.nodes[i].child[1] = where.at(r.child[1]);
    }
    if (any_member) {
      F.node_set.assign(m, -1);
      for (const auto& s : raw.member_sets) {
        std::vector<T> v;
        for (double d : s) v.push_back(static_cast<T>(d));
        std::sort(v.begin(), v.end());
        F.sets.push_back(std::move(v));
      }
      for (size_t i = 0; i < m; ++i) {
        const RawNode& r = raw.nodes[order[i]];
        if (r.mode == 6) F.node_set[i] = static_cast<int32_t>(r.member_set);
      }
    }
  }

  // ---- evaluation ----
  // Partial sums of trees [t0, t1) for rows [r0, r1) into acc / has (row-major, n_targets_ per row).
  template <class T, int kFamily>
  void walk_trees(const Forest<T>& F, const T* X, int64_t f, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
                  double* acc, uint8_t* has) const {
    const int64_t full = r0 + (r1 - r0) / kLanes * kLanes;  // rows in groups of eight; the rest is a tail
    for (int64_t t = t0; t < t1; ++t) {
      const int32_t root = F.roots[t];
      const int32_t dep = F.depth[t];
      const int32_t dmin = F.min_depth[t];
      for (int64_t r = r0; r < full; r += kLanes) {
        // eight rows through one tree in lockstep: the shallowest leaf's depth blindly, then until all are parked
        int32_t idx[kLanes];
        const T* row[kLanes];
        for (int k = 0; k < kLanes; ++k) {
          idx[k] = root;
          row[k] = X + (r + k) * f;
        }
        int32_t d = 0;
        for (; d < dmin; ++d)
          for (int k = 0; k < kLanes; ++k)
            idx[k] = F.template step_as<kFamily>(idx[k], F.nodes[idx[k]], row[k]);
        for (; d < dep; ++d) {
          bool moving = false;
          for (int k = 0; k < kLanes; ++k) {
            const Node<T>& n = F.nodes[idx[k]];
            moving |= n.mode() != kLeaf;
            idx[k] = F.template step_as<kFamily>(idx[k], n, row[k]);
          }
          if (!moving) break;
        }
        for (int k = 0; k < kLanes; ++k) take(idx[k], F, acc + (r - r0 + k) * n_targets_, has + (r - r0 + k) * n_targets_);
      }
    }
    // the tail (and a lone row): one row through eight trees at a time, each walk stopping at its leaf;
    // contributions still taken in tree order
    for (int64_t r = full; r < r1; ++r) {
      const T* row = X + r * f;
      double* a = acc + (r - r0) * n_targets_;
      uint8_t* h = has + (r - r0) * n_targets_;
      for (int64_t t = t0; t < t1; t += kLanes) {
        const int64_t m = std::min<int64_t>(kLanes, t1 - t);
        int32_t idx[kLanes];
        for (int64_t k = 0; k < m; ++k) idx[k] = F.roots[t + k];
        for (bool moving = true; moving;) {
          moving = false;
          for (int64_t k = 0; k < m; ++k) {
            const Node<T>& n = F.nodes[idx[k]];
            moving |= n.mode() != kLeaf;
            idx[k] = F.template step_as<kFamily>(idx[k], n, row);
          }
        }
        for (int64_t k = 0; k < m; ++k) take(idx[k], F, a, h);
      }
    }
  }

  // Adds the contributions of the leaf parked at node `idx` to one row's scores.
  template <class T>
  inline void take(int32_t idx, const Forest<T>& F, double* a, uint8_t* h) const {
    const int32_t leaf = F.node_leaf[idx];
    if (single_) {
      add(a[0], h[0], leaf_weight_[leaf]);
    } else {
      for (int32_t w = leaf_start_[leaf]; w < leaf_start_[leaf + 1]; ++w)
        add(a[leaf_target_[w]], h[leaf_target_[w]], leaf_weight_[w]);
    }
  }

  inline void add(double& a, uint8_t& h, double w) const {
    switch (agg_) {
      case kMin: a = (!h || w < a) ? w : a; break;
      case kMax: a = (!h || w > a) ? w : a; break;
      default: a += w; break;
    }
    h = 1;
  }

  inline void merge(double& a, uint8_t& h, double p, uint8_t ph) const {
    if (!ph) return;
    if (agg_ == kMin || agg_ == kMax) {
      add(a, h, p);
    } else {
      a += p;
      h = 1;
    }
  }

  template <class T>
  void chunk_sums(const Forest<T>& F, const T* X, int64_t f, int64_t r0, int64_t r1, int64_t c, double* p,
                  uint8_t* ph) const {
    const int64_t t0 = c * kChunk, t1 = std::min<int64_t>(n_trees_, t0 + kChunk);
    const size_t cells = static_cast<size_t>((r1 - r0) * n_targets_);
    std::fill(p, p + cells, 0.0);
    std::memset(ph, 0, cells);
    if (F.family == 1)
      walk_trees<T, 1>(F, X, f, r0, r1, t0, t1, p, ph);
    else if (F.family == 2)
      walk_trees<T, 2>(F, X, f, r0, r1, t0, t1, p, ph);
    else
      walk_trees<T, 0>(F, X, f, r0, r1, t0, t1, p, ph);
  }

  template <class T>
  void run(const Forest<T>& F, const T* X, int64_t n, int64_t f, std::vector<Tensor*>& out) const {
    const int64_t nt = n_targets_;
    const int64_t chunks = (n_trees_ + kChunk - 1) / kChunk;
    ThreadPool* pool = current_pool();
    const int threads = pool ? pool->num_threads() : 1;
    // rows per block: the block's features within ~16 KiB of L1, a multiple of the lane count
    int64_t block = std::max<int64_t>(kLanes, std::min<int64_t>(256, (16384 / std::max<int64_t>(1, f * sizeof(T)))));
    block = (block / kLanes) * kLanes;
    if (threads > 1)  // about four blocks per thread, so that threads finish together
      block = std::min(block, std::max<int64_t>(kLanes, (n / (4 * threads) + kLanes - 1) / kLanes * kLanes));
    const int64_t nblocks = (n + block - 1) / block;
    const double row_cost = 1.5 * static_cast<double>(std::max<int64_t>(1, total_depth_));  // ns per row
    std::vector<double> acc(static_cast<size_t>(n * nt));
    std::vector<uint8_t> has(static_cast<size_t>(n * nt));
    // Up to ~a thousand rows (when there are chunks enough for every thread), threads take chunks of
    // trees over all the rows: each tree is walked by one thread, while row blocks would each stream the
    // whole forest through their thread's cache. Both orders add the same chunk sums in the same order.
    const bool by_trees = threads > 1 && chunks > 1 && (nblocks < threads || (n <= 1024 && chunks >= 2 * threads));
    if (by_trees) {
      // chunks in parallel, their sums kept and added in chunk order
      std::vector<double> part(static_cast<size_t>(chunks * n * nt));
      std::vector<uint8_t> phas(part.size());
      parallel_for(chunks, static_cast<double>(n) * row_cost / static_cast<double>(chunks), [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c)
          chunk_sums(F, X, f, 0, n, c, part.data() + c * n * nt, phas.data() + c * n * nt);
      });
      for (int64_t c = 0; c < chunks; ++c)
        for (int64_t i = 0; i < n * nt; ++i) merge(acc[i], has[i], part[c * n * nt + i], phas[c * n * nt + i]);
    } else {
      parallel_for(nblocks, static_cast<double>(block) * row_cost, [&](int64_t b0, int64_t b1) {
        std::vector<double> p(static_cast<size_t>(block * nt));
        std::vector<uint8_t> ph(p.size());
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t r0 = b * block, r1 = std::min(n, r0 + block);
          for (int64_t c = 0; c < chunks; ++c) {
            chunk_sums(F, X, f, r0, r1, c, p.data(), ph.data());
            for (int64_t i = 0; i < (r1 - r0) * nt; ++i) merge(acc[r0 * nt + i], has[r0 * nt + i], p[i], ph[i]);
          }
        }
      });
    }
    if (classifier_) {
      int64_t* Y = static_cast<int64_t*>(out[0]->data);
      float* Z = static_cast<float*>(out[1]->data);
      for (int64_t r = 0; r < n; ++r) Y[r] = finish_class(acc.data() + r * nt, has.data() + r * nt, Z + r * nt);
    } else if (out[0]->dtype == kDouble) {
      double* Y = static_cast<double*>(out[0]->data);
      for (int64_t r = 0; r < n; ++r) finish_target<double>(acc.data() + r * nt, has.data() + r * nt, Y + r * nt);
    } else {
      float* Y = static_cast<float*>(out[0]->data);
      for (int64_t r = 0; r < n; ++r) finish_target<float>(acc.data() + r * nt, has.data() + r * nt, Y + r * nt);
    }
  }

  // Regression scores of one row (onnxruntime's aggregator conventions).
  template <class S>
  void finish_target(const double* s, const uint8_t* h, S* y) const {
    const int64_t nt = n_targets_;
    const double trees = static_cast<double>(std::max<int64_t>(1, n_trees_));
    if (nt == 1) {
      const double origin = base_.size() == 1 ? base_[0] : 0.0;
      double v;
      if (agg_ == kSum) v = s[0] + origin;
      else if (agg_ == kAverage) v = s[0] / trees + origin;
      else v = h[0] ? s[0] + origin : origin;
      y[0] = static_cast<S>(v);
      if (post_ == Post::kProbit) y[0] = static_cast<S>(ml::probit(static_cast<float>(y[0])));
      return;  // onnxruntime applies no other transform to a single target
    }
    const bool use_base = base_.size() == static_cast<size_t>(nt);
    for (int64_t k = 0; k < nt; ++k) {
      const double b = use_base ? base_[k] : 0.0;
      double v;
      if (agg_ == kSum) v = s[k] + b;
      else if (agg_ == kAverage) v = s[k] / trees + b;
      else v = b + (h[k] ? s[k] : 0.0);
      y[k] = static_cast<S>(v);
    }
    ml::post_row(post_, y, nt);
  }

  // Class scores and label of one row.
  int64_t finish_class(const double* s, const uint8_t* h, float* z) const {
    const int64_t nc = n_targets_;
    if (nc > 2) {
      std::vector<double> v(s, s + nc);
      std::vector<uint8_t> hv(h, h + nc);
      for (size_t k = 0; k < base_.size(); ++k) {
        v[k] += base_[k];
        hv[k] = 1;
      }
      int64_t best = -1;
      for (int64_t k = 0; k < nc; ++k)
        if (hv[k] && (best < 0 || v[k] > v[best])) best = k;
      for (int64_t k = 0; k < nc; ++k) z[k] = hv[k] ? static_cast<float>(v[k]) : 0.0f;
      ml::post_row(post_, z, nc);
      return labels_[best < 0 ? 0 : best];
    }
    double s0 = s[0], s1 = s[1];
    const bool h0 = h[0], h1 = h[1];
    bool two = true;
    if (base_.size() == 2) {
      if (h1) {  // onnxruntime: base_values[0] is not used here
        s1 = base_[1] + s0;
        s0 = -s1;
      } else {
        s1 += base_[1];
        s0 += base_[0];
      }
    } else if (base_.size() == 1) {
      s0 += base_[0];
      two = h1;
    } else {
      two = h1;
    }
    const float v0 = h0 ? static_cast<float>(s0) : 0.0f, v1 = h1 ? static_cast<float>(s1) : 0.0f;
    int64_t label;
    if (binary_case_) {
      const float pos = two && h1 ? v1 : v0;
      label = labels_[weights_positive_ ? (pos > 0.5f) : (pos > 0.0f)];
    } else {
      label = labels_[v1 > v0];
    }
    if (two) {
      z[0] = v0;
      z[1] = v1;
      ml::post_row(post_, z, 2);
    } else {
      ml::binary_row(post_, weights_positive_ && binary_case_, v0, z);
    }
    return label;
  }

  std::string who_;
  bool classifier_;
  std::vector<int64_t> labels_;
  bool opset5_;
  int64_t n_targets_ = 1, n_trees_ = 0, max_feat_ = -1, total_depth_ = 0;
  Agg agg_ = kSum;
  Post post_ = Post::kNone;
  std::vector<double> base_;
  bool single_ = false, weights_positive_ = true, binary_case_ = false;
  std::vector<int32_t> leaf_start_, leaf_target_;
  std::vector<double> leaf_weight_;
  Forest<float> ff_;
  Forest<double> fd_;
};

// ---- parsers ----

void same_length(const KernelArgs& a, const std::vector<std::pair<std::string, size_t>>& lens, size_t n,
                 const std::string& what) {
  for (const auto& l : lens)
    if (l.second != n)
      attr_fail(a, l.first, std::to_string(l.second) + " values", std::to_string(n) + " values, one per " + what);
}

int mode_code(const KernelArgs& a, const std::string& m) {
  static const char* names[] = {"BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ",
                                "BRANCH_MEMBER"};
  for (int i = 0; i < 7; ++i)
    if (m == names[i]) return i;
  if (m == "LEAF") return kLeaf;
  attr_fail(a, "nodes_modes", "'" + m + "'", "BRANCH_LEQ, BRANCH_LT, BRANCH_GTE, BRANCH_GT, BRANCH_EQ, BRANCH_NEQ or LEAF");
}

// TreeEnsembleRegressor / TreeEnsembleClassifier: nodes named by (tree id, node id).
RawEnsemble parse_legacy(const KernelArgs& a, const std::string& prefix) {
  RawEnsemble E;
  const auto treeids = attr_ints(a, "nodes_treeids");
  const auto nodeids = attr_ints(a, "nodes_nodeids");
  auto feats = attr_ints(a, "nodes_featureids");
  auto values = ml::floats_or_tensor(a, "nodes_values");
  const auto modes = attr_strings(a, "nodes_modes");
  const auto tids = attr_ints(a, "nodes_truenodeids");
  const auto fids = attr_ints(a, "nodes_falsenodeids");
  const auto mvt = attr_ints(a, "nodes_missing_value_tracks_true");
  const size_t n = treeids.size();
  if (n == 0) attr_fail(a, "nodes_treeids", "empty or missing", "one tree id per node");
  if (feats.empty()) feats.assign(n, 0);
  if (values.empty()) values.assign(n, 0.0);
  std::vector<std::pair<std::string, size_t>> lens = {
      {"nodes_nodeids", nodeids.size()}, {"nodes_featureids", feats.size()}, {"nodes_values", values.size()},
      {"nodes_modes", modes.size()},     {"nodes_truenodeids", tids.size()}, {"nodes_falsenodeids", fids.size()}};
  if (!mvt.empty()) lens.push_back({"nodes_missing_value_tracks_true", mvt.size()});
  same_length(a, lens, n, "node");
  std::map<std::pair<int64_t, int64_t>, int64_t> key;
  for (size_t k = 0; k < n; ++k)
    if (!key.emplace(std::make_pair(treeids[k], nodeids[k]), static_cast<int64_t>(k)).second)
      fail(ErrorKind::kInvalidModel, a.who() + ": node " + std::to_string(nodeids[k]) + " of tree " +
                                         std::to_string(treeids[k]) + " is defined twice");
  E.nodes.resize(n);
  for (size_t k = 0; k < n; ++k) {
    RawNode& r = E.nodes[k];
    r.mode = mode_code(a, modes[k]);
    if (r.mode == 6) attr_fail(a, "nodes_modes", "'BRANCH_MEMBER'", "a mode of this operator (TreeEnsemble has it)");
    r.feat = feats[k];
    r.thr = values[k];
    r.missing_true = !mvt.empty() && mvt[k] != 0;
    if (r.mode == kLeaf) continue;
    for (int c = 0; c < 2; ++c) {
      const int64_t id = c ? tids[k] : fids[k];
      auto it = key.find({treeids[k], id});
      if (it == key.end())
        fail(ErrorKind::kInvalidModel, a.who() + ": node " + std::to_string(nodeids[k]) + " of tree " +
                                           std::to_string(treeids[k]) + " points to node " + std::to_string(id) +
                                           ", which does not exist");
      r.child[c] = it->second;
    }
  }
  // roots: per tree id (in increasing order), the node no other node of the tree points to
  std::map<int64_t, std::vector<int64_t>> members;
  for (size_t k = 0; k < n; ++k) members[treeids[k]].push_back(static_cast<int64_t>(k));
  std::vector<char> pointed(n, 0);
  for (size_t k = 0; k < n; ++k)
    if (E.nodes[k].mode != kLeaf) pointed[E.nodes[k].child[0]] = pointed[E.nodes[k].child[1]] = 1;
  for (const auto& m : members) {
    int64_t root = -1;
    for (int64_t k : m.second)
      if (!pointed[k]) {
        root = k;
        break;
      }
    if (root < 0)
      fail(ErrorKind::kInvalidModel, a.who() + ": tree " + std::to_string(m.first) +
                                         " has no root (every node is some node's child: a cycle)");
    E.roots.push_back(root);
  }
  // leaf weights
  const auto ct = attr_ints(a, prefix + "_treeids");
  const auto cn = attr_ints(a, prefix + "_nodeids");
  const auto cid = attr_ints(a, prefix + "_ids");
  const auto cw = ml::floats_or_tensor(a, prefix + "_weights");
  same_length(a, {{prefix + "_nodeids", cn.size()}, {prefix + "_ids", cid.size()}, {prefix + "_weights", cw.size()}},
              ct.size(), "weight");
  for (size_t i = 0; i < ct.size(); ++i) {
    auto it = key.find({ct[i], cn[i]});
    if (it == key.end())
      fail(ErrorKind::kInvalidModel, a.who() + ": " + prefix + "_nodeids names node " + std::to_string(cn[i]) +
                                         " of tree " + std::to_string(ct[i]) + ", which does not exist");
    E.nodes[it->second].weights.push_back({cid[i], cw[i]});
  }
  E.base = ml::floats_or_tensor(a, "base_values");
  E.post = ml::read_post(a);
  return E;
}

std::unique_ptr<Kernel> make_regressor(const KernelArgs& a) {
  RawEnsemble E = parse_legacy(a, "target");
  int64_t max_id = -1;
  for (const auto& r : E.nodes)
    for (const auto& w : r.weights) max_id = std::max(max_id, w.first);
  E.n_targets = attr_int(a, "n_targets", max_id + 1 > 0 ? max_id + 1 : 1);
  if (E.n_targets < 1) attr_fail(a, "n_targets", std::to_string(E.n_targets), "at least 1");
  const std::string agg = expect_known_string(a, "aggregate_function", "SUM", {"AVERAGE", "SUM", "MIN", "MAX"});
  E.agg = agg == "AVERAGE" ? kAverage : agg == "MIN" ? kMin : agg == "MAX" ? kMax : kSum;
  return std::make_unique<TreeEnsembleKernel>(a, std::move(E), false, std::vector<int64_t>{});
}

std::unique_ptr<Kernel> make_classifier(const KernelArgs& a) {
  RawEnsemble E = parse_legacy(a, "class");
  std::vector<int64_t> labels = attr_ints(a, "classlabels_int64s");
  E.n_targets = static_cast<int64_t>(labels.size());
  E.agg = kSum;
  return std::make_unique<TreeEnsembleKernel>(a, std::move(E), true, std::move(labels));
}

// TreeEnsemble (ai.onnx.ml 5): interior nodes and leaves in separate arrays, children flagged as leaves.
std::unique_ptr<Kernel> make_tree_ensemble(const KernelArgs& a) {
  RawEnsemble E;
  const auto feats = attr_ints(a, "nodes_featureids");
  const auto splits = ml::tensor_floats(a, "nodes_splits");
  const auto modes = ml::ints_or_tensor(a, "nodes_modes");
  const auto tids = attr_ints(a, "nodes_truenodeids");
  const auto fids = attr_ints(a, "nodes_falsenodeids");
  const auto tleaf = attr_ints(a, "nodes_trueleafs");
  const auto fleaf = attr_ints(a, "nodes_falseleafs");
  const auto mvt = attr_ints(a, "nodes_missing_value_tracks_true");
  const auto ltarget = attr_ints(a, "leaf_targetids");
  const auto lweight = ml::tensor_floats(a, "leaf_weights");
  const auto roots = attr_ints(a, "tree_roots");
  const auto memb = ml::tensor_floats(a, "membership_values");
  const size_t nn = modes.size(), nl = lweight.size();
  std::vector<std::pair<std::string, size_t>> lens = {
      {"nodes_featureids", feats.size()}, {"nodes_splits", splits.size()},     {"nodes_truenodeids", tids.size()},
      {"nodes_falsenodeids", fids.size()}, {"nodes_trueleafs", tleaf.size()}, {"nodes_falseleafs", fleaf.size()}};
  if (!mvt.empty()) lens.push_back({"nodes_missing_value_tracks_true", mvt.size()});
  same_length(a, lens, nn, "node (nodes_modes has " + std::to_string(nn) + ")");
  same_length(a, {{"leaf_targetids", ltarget.size()}}, nl, "leaf weight");
  if (roots.empty()) attr_fail(a, "tree_roots", "empty or missing", "one root node per tree");
  E.nodes.resize(nn + nl);
  int64_t sets = 0;
  for (size_t k = 0; k < nn; ++k) {
    RawNode& r = E.nodes[k];
    if (modes[k] < 0 || modes[k] > 6) attr_fail(a, "nodes_modes", std::to_string(modes[k]), "in [0, 6]");
    r.mode = static_cast<int>(modes[k]);
    r.feat = feats[k];
    r.thr = splits[k];
    r.missing_true = !mvt.empty() && mvt[k] != 0;
    if (r.mode == 6) r.member_set = sets++;
    for (int c = 0; c < 2; ++c) {
      const int64_t id = c ? tids[k] : fids[k];
      const bool leaf = (c ? tleaf[k] : fleaf[k]) != 0;
      const size_t lim = leaf ? nl : nn;
      if (id < 0 || static_cast<size_t>(id) >= lim)
        fail(ErrorKind::kInvalidModel, a.who() + ": node " + std::to_string(k) + " points to " +
                                           (leaf ? "leaf " : "node ") + std::to_string(id) + " of " +
                                           std::to_string(lim));
      r.child[c] = leaf ? static_cast<int64_t>(nn) + id : id;
    }
  }
  for (size_t l = 0; l < nl; ++l) E.nodes[nn + l].weights.push_back({ltarget[l], lweight[l]});
  for (int64_t rt : roots) {
    if (rt < 0 || static_cast<size_t>(rt) >= nn)
      attr_fail(a, "tree_roots", std::to_string(rt), "a node index in [0, " + std::to_string(nn) + ")");
    E.roots.push_back(rt);
  }
  if (sets) {  // membership_values: one NaN-terminated set per BRANCH_MEMBER node, in node order
    std::vector<double> cur;
    for (double v : memb) {
      if (std::isnan(v)) {
        E.member_sets.push_back(cur);
        cur.clear();
      } else {
        cur.push_back(v);
      }
    }
    if (static_cast<int64_t>(E.member_sets.size()) < sets)
      attr_fail(a, "membership_values", std::to_string(E.member_sets.size()) + " sets",
                std::to_string(sets) + " NaN-terminated sets, one per BRANCH_MEMBER node");
  }
  int64_t max_id = -1;
  for (int64_t t : ltarget) max_id = std::max(max_id, t);
  E.n_targets = attr_int(a, "n_targets", max_id + 1 > 0 ? max_id + 1 : 1);
  if (E.n_targets < 1) attr_fail(a, "n_targets", std::to_string(E.n_targets), "at least 1");
  E.agg = static_cast<Agg>(expect_int_in(a, "aggregate_function", 1, 0, 3));
  E.post = ml::read_post(a);
  return std::make_unique<TreeEnsembleKernel>(a, std::move(E), false, std::vector<int64_t>{});
}

// Nodes these kernels leave to numpy: string labels (the native executor holds no strings), a single
// class, float16 thresholds.
bool int_labels(const KernelArgs& a) {
  auto it = a.attrs.find("classlabels_int64s");
  return it != a.attrs.end() && it->second.kind == AttrValue::kInts && it->second.ints.size() >= 2;
}

bool numeric_splits(const KernelArgs& a) {
  for (const char* name : {"nodes_splits", "leaf_weights", "membership_values"}) {
    auto it = a.attrs.find(name);
    if (it != a.attrs.end() && it->second.kind == AttrValue::kTensor && it->second.t &&
        it->second.t->dtype != kFloat && it->second.t->dtype != kDouble)
      return false;
  }
  return true;
}

}  // namespace

ONNXFAST_KERNELS(tree_ensemble) {
  const std::vector<int> legacy_types = {kFloat, kDouble, kInt64, kInt32};
  kernel("TreeEnsembleRegressor", "ai.onnx.ml").since(1).types(legacy_types).make(make_regressor);
  kernel("TreeEnsembleClassifier", "ai.onnx.ml").since(1).types(legacy_types).when(int_labels).make(make_classifier);
  kernel("TreeEnsemble", "ai.onnx.ml").since(5).types({kFloat, kDouble}).when(numeric_splits).make(make_tree_ensemble);
}

}  // namespace onnxfast
