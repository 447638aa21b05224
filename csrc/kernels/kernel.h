// The native kernel interface and the native kernel table.
//
// A kernel is created once per node at session creation (attributes parsed, constant inputs
// prepared, e.g. weights pre-packed), then for every run the executor calls infer() to learn
// output types/shapes, allocates the outputs, and calls compute() with the GIL released.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../core/errors.h"
#include "../core/tensor.h"

namespace onnxfast {

struct AttrValue {
  enum Kind { kNone, kInt, kFloat, kString, kInts, kFloats, kStrings, kTensor } kind = kNone;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::shared_ptr<Tensor> t;  // kTensor: a numeric tensor attribute (owns a copy of its data)
};

struct KernelArgs {
  std::string op_type;
  std::string domain;  // "" = ai.onnx
  std::string node_name;
  int opset = 0;          // the model's opset for the node's domain
  int since_version = 0;  // the schema version that opset selects (0: not given, as opset)
  int num_outputs = 1;  // the node's output count (Split)
  std::map<std::string, AttrValue> attrs;
  // Inputs that are constant (initializers) at session creation; null where not constant.
  std::vector<std::shared_ptr<Tensor>> const_inputs;
  bool allow_prepack = true;
  // Input shapes known at session creation (the model's declared or inferred types), per input:
  // input_ranks[i] is -1 where the rank is unknown (or the input absent); input_dims[i] holds the
  // dims where the rank is known, -1 for a dim not known. Checks of ranks unknown here run at run time.
  std::vector<int64_t> input_ranks;
  std::vector<Shape> input_dims;
  // Element type per input known at session creation (0 where unknown or absent): what KernelDef::accepts reads.
  std::vector<int> input_dtypes;

  int64_t get_int(const std::string& name, int64_t dflt) const;
  double get_float(const std::string& name, double dflt) const;
  std::string get_string(const std::string& name, const std::string& dflt) const;
  std::vector<int64_t> get_ints(const std::string& name) const;
  bool has(const std::string& name) const { return attrs.count(name) != 0; }
  // Input i's rank known at creation, -1 when unknown.
  int64_t rank_of(size_t i) const { return i < input_ranks.size() ? input_ranks[i] : -1; }
  // Input i's element type known at creation, 0 when unknown.
  int dtype_of(size_t i) const { return i < input_dtypes.size() ? input_dtypes[i] : 0; }
  // "<Op> '<node>'", the prefix of every error about this node.
  std::string who() const { return op_type + " '" + node_name + "'"; }
  // "<Op> node '<node>'", the numpy kernels' prefix: kernels whose run-time errors word them alike.
  std::string node_label() const { return op_type + " node '" + node_name + "'"; }
};

struct OutSpec {
  int dtype = kUndefined;
  Shape shape;
  // >= 0: the output is a view of that input (its bytes under `shape`, same dtype and element
  // count): nothing is allocated and compute() writes nothing; the executor shares the input's
  // storage (Reshape, Flatten, Squeeze, Unsqueeze, Identity).
  int alias_input = -1;
};

// The output tensor of `spec`: a view of the aliased input, or a new allocation through the memory
// guard (`what` names the requester).
Tensor output_tensor(const OutSpec& spec, const std::vector<const Tensor*>& in, const std::string& what, int device = 0);

class Kernel {
 public:
  virtual ~Kernel() = default;
  // Output dtypes and shapes for these inputs (null entries are omitted optional inputs).
  virtual void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const = 0;
  // Fill the already-allocated outputs. Must not touch Python.
  virtual void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const = 0;
  // Short description for the kernel listing ("native", "native:prepacked").
  virtual std::string describe() const { return "native"; }
  // Constant inputs this kernel copied into its own form at creation (pre-packed weights): at run
  // time it reads only their dtype and shape, so the planner may pass a placeholder (a tensor with
  // no data) and release the original when nothing else reads it.
  virtual std::vector<int> packed_inputs() const { return {}; }
};

// Base of float32 elementwise unary kernels: output shaped like the input, computed in chunks
// in parallel; subclasses implement apply() on one contiguous chunk.
class FloatUnaryKernel : public Kernel {
 public:
  FloatUnaryKernel(std::string name, double cost_per_element)
      : name_(std::move(name)), cost_(cost_per_element) {}
  void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const override;
  void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const override;

 protected:
  virtual void apply(const float* x, float* y, int64_t n) const = 0;
  std::string name_;

 private:
  double cost_;
};

// f(x chunk, y chunk, n) over the float32 elements of X (Y shaped alike) in parallel chunks of 4096;
// cost_per_element as for parallel_for. FloatUnaryKernel::compute runs apply() through it.
void float_chunks(const Tensor& X, Tensor& Y, double cost_per_element,
                  const std::function<void(const float*, float*, int64_t)>& f);

using KernelFactory = std::function<std::unique_ptr<Kernel>(const KernelArgs&)>;

// ---- The kernel registry ----------------------------------------------------------------------
// Each kernel file declares its kernels next to their code, in an ONNXFAST_KERNELS block:
//
//   ONNXFAST_KERNELS(pooling) {
//     kernel("MaxPool").since(1).types({kFloat}).make<PoolKernel>();
//     kernel("LpPool").types({kFloat}).when([](const KernelArgs& a) { return a.get_float("p", 2) >= 0; })
//         .make([](const KernelArgs& a) { return std::make_unique<PoolKernel>(a, PoolKind::kLp); });
//   }
//
// The blocks run once, at the first look-up (never during static initialization, so a bad
// declaration is an exception at import, not a crash). Python reads the table (_core.kernel_defs())
// instead of re-declaring it; the numpy kernels (onnxfast/ops) are the fallback for what a native
// kernel does not declare. Two declarations of one (domain, op, provider) whose version ranges and
// input-0 types overlap are refused: no declaration silently replaces another.
constexpr int kLatestVersion = 1 << 30;
extern const char* const kCpuProvider;  // "CPUExecutionProvider"

struct KernelDef {
  std::string domain;  // "" = ai.onnx
  std::string op;
  int since = 1;               // first schema version (the `since_version` an opset selects) computed
  int until = kLatestVersion;  // last one, inclusive
  std::string provider = kCpuProvider;
  std::vector<int> types;  // element types of input 0 ("T") computed; a node of another type runs on numpy
  // Element types allowed for further inputs (mixed-type kernels: uint8 x int8 MatMulInteger); an
  // input missing here takes any type the kernel itself checks.
  std::map<int, std::vector<int>> input_types;
  // Which nodes the kernel computes, judged from KernelArgs' attributes and input_dtypes (0 where
  // unknown); the others run on the numpy kernel. Empty: every node of the declared types.
  std::function<bool(const KernelArgs&)> accepts;
  // (output, input) pairs: the output may be a view of that input (OutSpec::alias_input at run time).
  std::vector<std::pair<int, int>> aliases;
  // (output, input) pairs: compute() is correct with the output written over that input (same type and
  // size, element i of the output computed from element i of the input only). The executor reuses the
  // input's buffer when the input dies at this step and nothing else holds it (Step::inplace).
  std::vector<std::pair<int, int>> inplace;
  // Taken when input 0's type is unknown at creation, its kernel computing every type the op's other
  // declarations of this version do too (half.cpp's wrappers forward float32 to the float32 kernel).
  bool serves_unknown_type = false;
  KernelFactory factory;
  std::string file;  // the declaring source file (for conflict messages)

  bool covers(int since_version) const { return since <= since_version && since_version <= until; }
  bool computes(int dtype) const;
};

// A declaration in progress: kernel("Op"[, "domain"]).since(..).types(..)...make<K>() adds it.
class KernelDecl {
 public:
  KernelDecl(std::string op, std::string domain);
  KernelDecl& since(int v) { d_.since = v; return *this; }
  KernelDecl& until(int v) { d_.until = v; return *this; }
  KernelDecl& provider(std::string p) { d_.provider = std::move(p); return *this; }
  KernelDecl& types(std::vector<int> t) { d_.types = std::move(t); return *this; }
  KernelDecl& input(int i, std::vector<int> t) { d_.input_types[i] = std::move(t); return *this; }
  KernelDecl& when(std::function<bool(const KernelArgs&)> f) { d_.accepts = std::move(f); return *this; }
  KernelDecl& alias(int output, int input) { d_.aliases.emplace_back(output, input); return *this; }
  KernelDecl& inplace(int output, int input) { d_.inplace.emplace_back(output, input); return *this; }
  KernelDecl& serves_unknown_type() { d_.serves_unknown_type = true; return *this; }
  void make(KernelFactory f);
  template <class K>
  void make() {
    make([](const KernelArgs& a) { return std::make_unique<K>(a); });
  }

 private:
  KernelDef d_;
};
KernelDecl kernel(std::string op, std::string domain = "");

// Registration plumbing behind ONNXFAST_KERNELS (returns true; the block runs at the first look-up).
bool add_kernel_block(void (*block)(), const char* file);
#define ONNXFAST_KERNELS(tag)                                                                        \
  static void onnxfast_kernels_##tag();                                                              \
  [[maybe_unused]] static const bool onnxfast_kernels_##tag##_added =                                \
      ::onnxfast::add_kernel_block(&onnxfast_kernels_##tag, __FILE__);                               \
  static void onnxfast_kernels_##tag()

// Every declaration (runs the blocks on first use; std::logic_error on conflicting declarations).
const std::vector<KernelDef>& kernel_defs();
// The declaration computing a node of this schema version whose input 0 has `dtype` (0: unknown: one
// that serves_unknown_type, else the float32 kernel where one is declared, else the first); null when none.
const KernelDef* find_kernel(const std::string& domain, const std::string& op, int since_version, int dtype,
                             const std::string& provider = kCpuProvider);
// Input-0 types a node's kernel made from `def` computes at run time: its own, or for a declaration that
// serves unknown types, those of every declaration of the op at this version and provider.
std::vector<int> run_time_types(const KernelDef& def, int since_version);
// The kernel of `def` for a node: checks the declared input types first (InvalidType).
std::unique_ptr<Kernel> create_kernel(const KernelDef& def, const KernelArgs& args);
// Testing aid: a kernel by op name (args' domain and version, else the latest; input 0's type, else float32).
std::unique_ptr<Kernel> create_kernel(const std::string& op, const KernelArgs& args);

// Helpers shared by kernels.

// dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols (32-bit elements: floats, or any 4-byte
// words, copied bit for bit). 4 x 4 blocks in SSE registers on x86-64, 16 source rows at a time.
// Defined in kernel.cpp (baseline flags): the conv tile transpose, GEMM's A strips, Transpose.
void transpose_f32(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd);
[[noreturn]] void kernel_fail(const std::string& msg);
// IEEE half (float16) bits -> float (half.cpp); for kernels reading a float16 parameter tensor.
float half_to_float32(uint16_t h);
// Rows of float16 <-> float32 (half.cpp: F16C where the CPU has it; float -> half rounds to nearest even).
void half_to_float_row(const uint16_t* s, float* d, int64_t n);
void float_to_half_row(const float* s, uint16_t* d, int64_t n);

// Row-major odometer over some dims, tracking an element offset into each of N tensors
// (strides[k][d]: tensor k's stride for dim d). seek() jumps to a linear index, next() steps.
template <int N>
struct Odometer {
  std::vector<int64_t> dims, idx;
  std::vector<int64_t> strides[N];
  int64_t off[N] = {};
  void seek(int64_t lin) {
    idx.assign(dims.size(), 0);
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (size_t i = dims.size(); i-- > 0;) {
      idx[i] = lin % dims[i];
      lin /= dims[i];
      for (int k = 0; k < N; ++k) off[k] += idx[i] * strides[k][i];
    }
  }
  void next() {
    for (size_t i = dims.size(); i-- > 0;) {
      if (++idx[i] < dims[i]) {
        for (int k = 0; k < N; ++k) off[k] += strides[k][i];
        return;
      }
      for (int k = 0; k < N; ++k) off[k] -= strides[k][i] * (dims[i] - 1);
      idx[i] = 0;
    }
  }
};
void expect_dtype(const Tensor& t, int dtype, const char* what);
// axis in [-rank, rank) made non-negative (InvalidArgument naming who / what otherwise).
int64_t normalize_axis(int64_t axis, int64_t rank, const std::string& who, const char* what);
// The values of a 1-D (or scalar) int32 / int64 tensor (InvalidType naming who / what otherwise).
std::vector<int64_t> int_values(const Tensor& t, const std::string& who, const char* what);
// "[1, 2, 3]", for error messages.
std::string list_str(const std::vector<int64_t>& v);
std::string list_str(const std::vector<double>& v);
// Conv / ConvTranspose: inputs X and W present and float32; the optional bias (input 2) float32 of shape (M,).
void expect_conv_inputs(const std::vector<const Tensor*>& in, const std::string& who);
void expect_conv_bias(const std::vector<const Tensor*>& in, int64_t M, const std::string& who);
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* what);
// A [.., M, K] @ B [.., K, N] by numpy's matmul rules: a 1-D A is a row, a 1-D B a column (their unit
// dim dropped from the output), batch dims broadcast. Errors name `who`.
struct MatMulDims {
  int64_t M = 0, K = 0, N = 0;
  Shape out;    // the output shape
  Shape batch;  // the broadcast batch dims (out without M / N)
  // Element offsets of A's and B's matrix for output batch t (t in [0, numel(batch))).
  std::vector<int64_t> a_stride, b_stride;  // per batch dim: 0 where that operand broadcasts
  void offsets(int64_t t, int64_t* oa, int64_t* ob) const;
};
MatMulDims matmul_dims(const Shape& a, const Shape& b, const std::string& who);

// ---- Validation at kernel creation ----------------------------------------------------------
// Kernels check their attributes, and the input ranks the model declares, in their constructors,
// i.e. at session creation, so a bad model is refused before it runs (InvalidModel); ranks that are
// only known at run time are checked by infer(). One message form for all of them:
//   "<Op> '<node>': attribute '<attr>' is <value>; it must be <allowed>"
//   "<Op> '<node>': input <i> ('<name>') has rank <r>; it must be <allowed>"
// (onnxfast/ops/_validate.py words the Python side's errors alike.)
[[noreturn]] void attr_fail(const KernelArgs& a, const std::string& attr, const std::string& value,
                            const std::string& allowed);
[[noreturn]] void input_fail(const KernelArgs& a, size_t input, const std::string& input_name, const std::string& what,
                             const std::string& allowed);
// Typed attribute readers: the default when absent, InvalidModel when the attribute has another type.
int64_t attr_int(const KernelArgs& a, const std::string& attr, int64_t dflt);
// A float attribute that is a number (NaN refused unless allow_nan).
double attr_float(const KernelArgs& a, const std::string& attr, double dflt, bool allow_nan = false);
std::vector<int64_t> attr_ints(const KernelArgs& a, const std::string& attr);
std::vector<double> attr_floats(const KernelArgs& a, const std::string& attr);
std::string attr_string(const KernelArgs& a, const std::string& attr, const std::string& dflt);
std::vector<std::string> attr_strings(const KernelArgs& a, const std::string& attr);
// An integer attribute in [lo, hi].
int64_t expect_int_in(const KernelArgs& a, const std::string& attr, int64_t dflt, int64_t lo, int64_t hi);
// A float attribute that is finite (epsilon).
double expect_finite(const KernelArgs& a, const std::string& attr, double dflt);
// A string attribute that is one of `allowed`.
std::string expect_known_string(const KernelArgs& a, const std::string& attr, const std::string& dflt,
                                const std::vector<std::string>& allowed);
// Refuses attributes not in `known` (operators without an ONNX schema, whose nodes the loader cannot check).
void expect_known_attrs(const KernelArgs& a, const std::vector<std::string>& known);
// An axis value of attribute `attr` in [-rank, rank - 1] where rank >= 0 is known (returned as given).
int64_t check_axis(const KernelArgs& a, const std::string& attr, int64_t axis, int64_t rank);
// Axes of attribute (or constant input) `attr`: each in range where the rank is known, none twice.
void check_axes(const KernelArgs& a, const std::string& attr, const std::vector<int64_t>& axes, int64_t rank);
// The same for axes given by a constant input.
void check_axes_input(const KernelArgs& a, size_t input, const std::string& input_name,
                      const std::vector<int64_t>& axes, int64_t rank);
// Input i's rank, where known, in [lo, hi] (hi < 0: no upper bound).
void expect_rank_in(const KernelArgs& a, size_t input, const std::string& input_name, int64_t lo, int64_t hi);
// The known dims of these inputs broadcast together (numpy rules); all inputs when `inputs` is empty.
void expect_broadcastable(const KernelArgs& a, std::vector<size_t> inputs = {});
// "1.5", "nan", "-inf": a value for messages.
std::string num_str(double v);

}  // namespace onnxfast
