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
  enum Kind { kNone, kInt, kFloat, kString, kInts, kFloats, kStrings } kind = kNone;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
};

struct KernelArgs {
  std::string op_type;
  std::string node_name;
  int opset = 0;
  std::map<std::string, AttrValue> attrs;
  // Inputs that are constant (initializers) at session creation; null where not constant.
  std::vector<std::shared_ptr<Tensor>> const_inputs;
  bool allow_prepack = true;

  int64_t get_int(const std::string& name, int64_t dflt) const;
  double get_float(const std::string& name, double dflt) const;
  std::string get_string(const std::string& name, const std::string& dflt) const;
  std::vector<int64_t> get_ints(const std::string& name) const;
  bool has(const std::string& name) const { return attrs.count(name) != 0; }
};

struct OutSpec {
  int dtype = kUndefined;
  Shape shape;
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  // Output dtypes and shapes for these inputs (null entries are omitted optional inputs).
  virtual void infer(const std::vector<const Tensor*>& in, std::vector<OutSpec>& out) const = 0;
  // Fill the already-allocated outputs. Must not touch Python.
  virtual void compute(const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) const = 0;
  // Short description for the kernel listing ("native", "native:prepacked").
  virtual std::string describe() const { return "native"; }
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

struct KernelEntry {
  KernelFactory factory;
  std::vector<int> dtypes;  // element types of the first input this kernel computes
};

// op type -> entry. Filled once by the register_* functions below.
std::map<std::string, KernelEntry>& kernel_table();
void register_kernel(const std::string& op, std::vector<int> dtypes, KernelFactory f);

void register_elementwise_kernels();
void register_gemm_kernels();
void register_conv_kernels();
void register_conv_transpose_kernels();  // conv_transpose.cpp
void register_device_kernels();
void register_normalization_kernels();
// float16 / bfloat16 variants of MatMul, Gemm, Conv, ConvTranspose (call after those are registered).
void register_half_kernels();
// pooling.cpp, reduce.cpp, tensor_ops.cpp
void register_pooling_kernels();
void register_reduce_kernels();
void register_tensor_kernels();
// resize.cpp: Resize (float32, opset 10+) and Upsample 7-9 (as Resize-10)
void register_resize_kernels();

// Helpers shared by kernels.

// dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols (32-bit elements: floats, or any 4-byte
// words, copied bit for bit). 4 x 4 blocks in SSE registers on x86-64, 16 source rows at a time.
// Defined in kernel.cpp (baseline flags): the conv tile transpose, GEMM's A strips, Transpose.
void transpose_f32(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd);
[[noreturn]] void kernel_fail(const std::string& msg);
// IEEE half (float16) bits -> float (half.cpp); for kernels reading a float16 parameter tensor.
float half_to_float32(uint16_t h);

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

}  // namespace onnxfast
