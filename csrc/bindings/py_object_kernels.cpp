// Native kernels over values that are Python objects: string tensors (numpy object arrays, the way
// onnxruntime hands them to Python) and ZipMap's list of dicts. They are host steps, run on the
// executor's thread with the GIL held, but the work is C++: a hash lookup per element instead of a
// numpy kernel's Python-level loop.
//
// The tables come ready-made from the operators' Python factories (onnxfast/ops/ml.py), which
// also hold the numpy kernels: attribute parsing and duplicate-key rules live in one place, so the
// two kernels of an operator cannot disagree on them.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <memory>
#include <cstring>
#include <string_view>
#include <unordered_map>

#include "py_object_kernels.h"
#include "../core/errors.h"

namespace onnxfast {

namespace {

// Python references a kernel keeps; dropped under the GIL whichever thread destroys the kernel.
class PyRefs {
 public:
  PyRefs() = default;
  PyRefs(const PyRefs&) = delete;
  PyRefs& operator=(const PyRefs&) = delete;
  ~PyRefs() {
    if (refs_.empty() || !Py_IsInitialized()) return;
    PyGILState_STATE st = PyGILState_Ensure();
    for (PyObject* p : refs_) Py_XDECREF(p);
    PyGILState_Release(st);
  }
  PyObject* keep(py::handle h) {
    Py_INCREF(h.ptr());
    refs_.push_back(h.ptr());
    return h.ptr();
  }

 private:
  std::vector<PyObject*> refs_;
};

// Input 0 as a C-contiguous numpy object array (str / bytes arrays converted), or InvalidType.
py::array string_input(const Value& v, const std::string& label) {
  if (v.kind == Value::kTensor)
    fail(ErrorKind::kInvalidType, label + ": expects a string tensor, got tensor(" + dtype_name(v.t.dtype) + ")");
  if (v.kind != Value::kObject) fail(ErrorKind::kInvalidArgument, label + ": input 0 is missing");
  py::object o = value_to_py(v);
  if (!py::isinstance<py::array>(o)) {
    std::string tn = py::str(py::type::of(o).attr("__name__"));
    fail(ErrorKind::kInvalidType, label + ": expects a string tensor, got " + tn);
  }
  py::array a = py::reinterpret_borrow<py::array>(o);
  const char kind = a.dtype().kind();
  if (kind != 'O') {
    if (kind != 'U' && kind != 'S')
      fail(ErrorKind::kInvalidType, label + ": expects a string tensor, got numpy dtype " +
                                        std::string(py::str(a.dtype())));
    a = py::reinterpret_steal<py::array>(a.attr("astype")(py::dtype("O")).release());
  }
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_))
    a = py::module_::import("numpy").attr("ascontiguousarray")(a);
  return a;
}

Shape shape_of(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

// The text of one element of a string tensor: str as UTF-8, bytes as they are, anything else as its
// str(). False when it has no UTF-8 form (a lone surrogate), which no key can equal.
bool element_text(PyObject* o, std::string& scratch, std::string_view& out) {
  if (o && PyUnicode_Check(o)) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(o, &n);
    if (!s) {
      PyErr_Clear();
      return false;
    }
    out = std::string_view(s, static_cast<size_t>(n));
    return true;
  }
  if (o && PyBytes_Check(o)) {
    out = std::string_view(PyBytes_AS_STRING(o), static_cast<size_t>(PyBytes_GET_SIZE(o)));
    return true;
  }
  py::str s = o ? py::str(py::handle(o)) : py::str("None");
  scratch = s.cast<std::string>();
  out = scratch;
  return true;
}

// string -> position in the key list (the last position of a repeated key)
class StringIndex {
 public:
  explicit StringIndex(py::sequence keys) {
    keys_.reserve(py::len(keys));
    for (auto k : keys) keys_.push_back(py::cast<std::string>(k));
    index_.reserve(keys_.size());
    // the last of equal keys wins, as a Python dict built from the list would have it
    for (size_t i = 0; i < keys_.size(); ++i) index_[std::string_view(keys_[i])] = static_cast<int64_t>(i);
  }
  size_t size() const { return keys_.size(); }
  int64_t find(PyObject* o, std::string& scratch) const {
    std::string_view t;
    if (!element_text(o, scratch, t)) return -1;
    auto it = index_.find(t);
    return it == index_.end() ? -1 : it->second;
  }

 private:
  std::vector<std::string> keys_;
  std::unordered_map<std::string_view, int64_t> index_;
};

// The base of the kernels: one input, one output; the GIL held for the step.
class ObjectKernel : public HostStep {
 public:
  explicit ObjectKernel(std::string label) : label_(std::move(label)) {}
  void run(const Step& st, RunState& r) override {
    py::gil_scoped_acquire gil;
    r.deferred.clear();  // numpy-owned buffers that died since the last host step
    Value out = compute_step(st, r);
    if (!st.outputs.empty() && st.outputs[0] >= 0) r.at(st.outputs[0]) = std::move(out);
    release_host_objects(st, r);
  }
  // The output from the step's inputs; the one-input kernels implement compute().
  virtual Value compute_step(const Step& st, RunState& r) {
    if (st.inputs.empty() || st.inputs[0] < 0) fail(ErrorKind::kInvalidArgument, label_ + ": input 0 is missing");
    return compute(r.get(st.inputs[0]));
  }
  virtual Value compute(const Value& in) { fail(ErrorKind::kRuntime, label_ + ": internal error: no compute"); }

 protected:
  std::string label_;
};

// OneHotEncoder over string categories: float [..., ncats]; unknown values give a zero row, or an
// error when zeros=0.
class OneHotStrings : public ObjectKernel {
 public:
  OneHotStrings(std::string label, py::sequence cats, bool zeros)
      : ObjectKernel(std::move(label)), cats_(cats), zeros_(zeros) {}
  Value compute(const Value& in) override {
    py::array a = string_input(in, label_);
    Shape shape = shape_of(a);
    const int64_t n = shape_numel(shape);
    const int64_t c = static_cast<int64_t>(cats_.size());
    Shape oshape = shape;
    oshape.push_back(c);
    Tensor t = Tensor::empty(kFloat, oshape, label_ + " output");
    float* o = t.ptr<float>();
    if (n > 0 && c > 0) std::memset(o, 0, static_cast<size_t>(n * c) * sizeof(float));
    PyObject** x = static_cast<PyObject**>(a.mutable_data());
    std::string scratch;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = cats_.find(x[i], scratch);
      if (k >= 0) {
        o[i * c + k] = 1.0f;
      } else if (!zeros_) {
        std::string rep = py::repr(x[i] ? py::handle(x[i]) : py::handle(Py_None));
        fail(ErrorKind::kInvalidArgument, label_ + ": value " + rep + " is not a known category (zeros=0)");
      }
    }
    return Value::of_tensor(std::move(t));
  }

 private:
  StringIndex cats_;
  bool zeros_;
};

// string -> number or string (LabelEncoder, CategoryMapper): values[position of the key], or the default.
class StringLookup : public ObjectKernel {
 public:
  StringLookup(std::string label, py::sequence keys, py::object values, py::object deflt)
      : ObjectKernel(std::move(label)), keys_(keys) {
    if (py::isinstance<py::array>(values) && py::reinterpret_borrow<py::array>(values).dtype().kind() != 'O') {
      py::array v = py::reinterpret_borrow<py::array>(values);
      out_dtype_ = dtype_code_of(v);
      const char kind = v.dtype().kind();
      if (out_dtype_ <= 0 || !(kind == 'i' || kind == 'u' || (kind == 'f' && (out_dtype_ == kFloat ||
                                                                               out_dtype_ == kDouble))))
        fail(ErrorKind::kInvalidModel, label_ + ": values of numpy dtype " + std::string(py::str(v.dtype())) +
                                           " are not an integer type, float or double");
      // the default in the values' type, as numpy's asarray(default, dtype) gives it
      py::list all = v.attr("tolist")();
      all.append(py::array(v.dtype(), std::vector<py::ssize_t>{}).attr("dtype").attr("type")(deflt).attr("item")());
      for (auto x : all) {
        if (kind == 'f') nums_.push_back(py::cast<double>(x));
        else ints_.push_back(kind == 'u' ? static_cast<int64_t>(py::cast<uint64_t>(x)) : py::cast<int64_t>(x));
      }
    } else {
      out_dtype_ = kString;
      for (auto x : values) objs_.push_back(refs_.keep(x));
      objs_.push_back(refs_.keep(deflt));
    }
    const size_t nv = out_dtype_ == kString ? objs_.size() : std::max(ints_.size(), nums_.size());
    if (nv != keys_.size() + 1)
      fail(ErrorKind::kInvalidModel, label_ + ": " + std::to_string(keys_.size()) + " keys but " +
                                         std::to_string(nv - 1) + " values");
  }
  Value compute(const Value& in) override {
    py::array a = string_input(in, label_);
    Shape shape = shape_of(a);
    const int64_t n = shape_numel(shape);
    const int64_t dflt = static_cast<int64_t>(keys_.size());
    PyObject** x = static_cast<PyObject**>(a.mutable_data());
    std::string scratch;
    auto pos = [&](int64_t i) {
      const int64_t k = keys_.find(x[i], scratch);
      return k >= 0 ? k : dflt;
    };
    if (out_dtype_ == kString) {
      py::array out(py::dtype("O"), std::vector<py::ssize_t>(shape.begin(), shape.end()));
      PyObject** o = static_cast<PyObject**>(out.mutable_data());
      for (int64_t i = 0; i < n; ++i) {
        PyObject* v = objs_[static_cast<size_t>(pos(i))];
        Py_INCREF(v);
        Py_XDECREF(o[i]);
        o[i] = v;
      }
      return value_from_py(out, false);
    }
    Tensor t = Tensor::empty(out_dtype_, shape, label_ + " output");
    auto fill = [&](auto* o, const auto& table) {
      using T = std::remove_pointer_t<decltype(o)>;
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<T>(table[static_cast<size_t>(pos(i))]);
    };
    switch (out_dtype_) {
      case kFloat: fill(t.ptr<float>(), nums_); break;
      case kDouble: fill(t.ptr<double>(), nums_); break;
      case kInt8: fill(t.ptr<int8_t>(), ints_); break;
      case kUInt8: fill(t.ptr<uint8_t>(), ints_); break;
      case kInt16: fill(t.ptr<int16_t>(), ints_); break;
      case kUInt16: fill(t.ptr<uint16_t>(), ints_); break;
      case kInt32: fill(t.ptr<int32_t>(), ints_); break;
      case kUInt32: fill(t.ptr<uint32_t>(), ints_); break;
      case kInt64: fill(t.ptr<int64_t>(), ints_); break;
      case kUInt64: fill(t.ptr<uint64_t>(), ints_); break;
      default: fail(ErrorKind::kRuntime, label_ + ": internal error: output type " + dtype_name(out_dtype_));
    }
    return Value::of_tensor(std::move(t));
  }

 private:
  StringIndex keys_;
  int out_dtype_ = kString;
  std::vector<int64_t> ints_;  // integer values then the default (unsigned ones as their bits)
  std::vector<double> nums_;   // float / double values then the default
  std::vector<PyObject*> objs_;
  PyRefs refs_;
};

template <typename F>
void for_each_number(const Tensor& t, const std::string& label, F&& f) {
  const int64_t n = t.numel();
  switch (t.dtype) {
#define ONNXFAST_NUM_CASE(code, T)                                \
  case code: {                                                    \
    const T* p = t.ptr<T>();                                      \
    for (int64_t i = 0; i < n; ++i) f(i, p[i]);                   \
    return;                                                       \
  }
    ONNXFAST_NUM_CASE(kFloat, float)
    ONNXFAST_NUM_CASE(kDouble, double)
    ONNXFAST_NUM_CASE(kInt8, int8_t)
    ONNXFAST_NUM_CASE(kUInt8, uint8_t)
    ONNXFAST_NUM_CASE(kInt16, int16_t)
    ONNXFAST_NUM_CASE(kUInt16, uint16_t)
    ONNXFAST_NUM_CASE(kInt32, int32_t)
    ONNXFAST_NUM_CASE(kUInt32, uint32_t)
    ONNXFAST_NUM_CASE(kInt64, int64_t)
    ONNXFAST_NUM_CASE(kUInt64, uint64_t)
#undef ONNXFAST_NUM_CASE
    default:
      fail(ErrorKind::kInvalidType, label + ": expects a numeric tensor, got tensor(" + dtype_name(t.dtype) + ")");
  }
}

// number -> string (LabelEncoder, CategoryMapper): the input is converted to the keys' type first
// (numpy's astype), float keys compare as numbers (-0 equals 0), NaN maps to `nan_value` when given
// and to the default otherwise.
class NumberToString : public ObjectKernel {
 public:
  NumberToString(std::string label, py::array keys, py::sequence values, py::object deflt, py::object nan_value)
      : ObjectKernel(std::move(label)) {
    key_dtype_ = dtype_code_of(keys);
    if (key_dtype_ != kInt64 && key_dtype_ != kFloat && key_dtype_ != kDouble)
      fail(ErrorKind::kInvalidModel, label_ + ": keys of numpy dtype " + std::string(py::str(keys.dtype())) +
                                         " are not int64, float or double");
    py::list kl = keys.attr("tolist")();
    if (py::len(kl) != py::len(values))
      fail(ErrorKind::kInvalidModel, label_ + ": " + std::to_string(py::len(kl)) + " keys but " +
                                         std::to_string(py::len(values)) + " values");
    size_t i = 0;
    for (auto v : values) {
      PyObject* s = refs_.keep(v);
      py::handle k = kl[i++];
      if (key_dtype_ == kInt64) {
        ints_.emplace(py::cast<int64_t>(k), s);  // first key wins, as the numpy kernel's searchsorted
      } else {
        const double d = py::cast<double>(k);
        if (!std::isnan(d)) floats_.emplace(bits(d), s);
      }
    }
    default_ = refs_.keep(deflt);
    nan_ = nan_value.is_none() ? default_ : refs_.keep(nan_value);
  }
  Value compute(const Value& in) override {
    if (in.kind != Value::kTensor) {
      if (in.kind == Value::kEmpty) fail(ErrorKind::kInvalidArgument, label_ + ": input 0 is missing");
      fail(ErrorKind::kInvalidType, label_ + ": expects a numeric tensor, got a string tensor or other object");
    }
    const Tensor& t = in.t;
    py::array out(py::dtype("O"), std::vector<py::ssize_t>(t.shape.begin(), t.shape.end()));
    PyObject** o = static_cast<PyObject**>(out.mutable_data());
    auto put = [&](int64_t i, PyObject* v) {
      Py_INCREF(v);
      Py_XDECREF(o[i]);
      o[i] = v;
    };
    if (key_dtype_ == kInt64) {
      for_each_number(t, label_, [&](int64_t i, auto x) {
        using T = decltype(x);
        if constexpr (std::is_floating_point_v<T>) {
          // numpy's astype(int64) of a value outside int64 (NaN, inf) is undefined: no key matches it
          if (!(x >= -9.2233720368547758e18 && x < 9.2233720368547758e18)) return put(i, default_);
        }
        auto it = ints_.find(static_cast<int64_t>(x));
        put(i, it == ints_.end() ? default_ : it->second);
      });
    } else {
      const bool f32 = key_dtype_ == kFloat;
      for_each_number(t, label_, [&](int64_t i, auto x) {
        double d = f32 ? static_cast<double>(static_cast<float>(x)) : static_cast<double>(x);
        if (std::isnan(d)) return put(i, nan_);
        auto it = floats_.find(bits(d));
        put(i, it == floats_.end() ? default_ : it->second);
      });
    }
    return value_from_py(out, false);
  }

 private:
  static uint64_t bits(double d) {
    if (d == 0.0) d = 0.0;  // -0 and 0 are one key
    uint64_t b;
    std::memcpy(&b, &d, sizeof b);
    return b;
  }
  int key_dtype_ = kInt64;
  std::unordered_map<int64_t, PyObject*> ints_;
  std::unordered_map<uint64_t, PyObject*> floats_;
  PyObject* default_ = nullptr;
  PyObject* nan_ = nullptr;
  PyRefs refs_;
};

// ZipMap: a float matrix (rows, labels) -> a list of {label: probability} dicts, onnxruntime's
// Python output for seq(map(...)).
class ZipMapKernel : public ObjectKernel {
 public:
  ZipMapKernel(std::string label, py::sequence labels) : ObjectKernel(std::move(label)) {
    for (auto k : labels) labels_.push_back(refs_.keep(k));
  }
  Value compute(const Value& in) override {
    if (in.kind != Value::kTensor) fail(ErrorKind::kInvalidType, label_ + ": expects a float tensor");
    const Tensor& t = in.t;
    const int64_t c = static_cast<int64_t>(labels_.size());
    const bool ok_shape = (t.rank() == 1 && t.shape[0] == c) || (t.rank() == 2 && t.shape[1] == c);
    if (!ok_shape)
      fail(ErrorKind::kInvalidArgument, label_ + ": X of shape " + shape_str(t.shape) + " does not have " +
                                            std::to_string(c) + " columns");
    const int64_t n = t.rank() == 1 ? 1 : t.shape[0];
    if (t.dtype == kFloat) return value_from_py(zipmap_rows(labels_.data(), c, t.ptr<float>(), n), false);
    if (t.dtype == kDouble) {
      std::vector<float> f(static_cast<size_t>(n * c));
      const double* p = t.ptr<double>();
      for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(p[i]);
      return value_from_py(zipmap_rows(labels_.data(), c, f.data(), n), false);
    }
    fail(ErrorKind::kInvalidType, label_ + ": expects a float tensor, got tensor(" + dtype_name(t.dtype) + ")");
  }

 private:
  std::vector<PyObject*> labels_;
  PyRefs refs_;
};

// The dict a map value holds, or InvalidType.
PyObject* map_input(const Value& v, const std::string& label) {
  if (v.kind == Value::kTensor)
    fail(ErrorKind::kInvalidType, label + ": input 0 must be a map (a dict), got tensor(" + dtype_name(v.t.dtype) + ")");
  if (v.kind != Value::kObject) fail(ErrorKind::kInvalidArgument, label + ": input 0 is missing");
  py::object o = value_to_py(v);
  if (!PyDict_Check(o.ptr())) {
    std::string tn = py::str(py::type::of(o).attr("__name__"));
    fail(ErrorKind::kInvalidType, label + ": input 0 must be a map (a dict), got " + tn);
  }
  return o.ptr();  // borrowed: the value keeps it alive
}

double map_number(PyObject* v, PyObject* k, const std::string& label) {
  const double d = PyFloat_AsDouble(v);
  if (d == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    fail(ErrorKind::kInvalidType, label + ": the value of key " + std::string(py::repr(k)) + " is not a number");
  }
  return d;
}

bool map_int_key(PyObject* k, int64_t& out) {
  if (!PyLong_Check(k)) return false;
  int overflow = 0;
  out = PyLong_AsLongLongAndOverflow(k, &overflow);
  return !overflow && !(out == -1 && PyErr_Occurred());
}

// ArrayFeatureExtractor of a string tensor: X[..., Y] (a 1-D X gives one row), Y int64 or int32 indices
// into the last dimension; the strings are shared, not copied.
class StringFeatureExtractor : public ObjectKernel {
 public:
  using ObjectKernel::ObjectKernel;
  Value compute_step(const Step& st, RunState& r) override {
    if (st.inputs.size() < 2 || st.inputs[0] < 0 || st.inputs[1] < 0)
      fail(ErrorKind::kInvalidArgument, label_ + ": needs inputs X and Y");
    py::array a = string_input(r.get(st.inputs[0]), label_);
    const Value& yv = r.get(st.inputs[1]);
    if (yv.kind != Value::kTensor || (yv.t.dtype != kInt64 && yv.t.dtype != kInt32))
      fail(ErrorKind::kInvalidType, label_ + ": Y must be an int64 or int32 tensor");
    std::vector<int64_t> idx(static_cast<size_t>(yv.t.numel()));
    for (size_t i = 0; i < idx.size(); ++i)
      idx[i] = yv.t.dtype == kInt64 ? yv.t.ptr<int64_t>()[i] : yv.t.ptr<int32_t>()[i];
    Shape xs = shape_of(a);
    const int64_t d = xs.empty() ? 0 : xs.back();
    for (int64_t i : idx)
      if (i < 0 || i >= d)
        fail(ErrorKind::kIndex, label_ + ": index " + std::to_string(i) +
                                    " is out of range for the last dimension of size " + std::to_string(d));
    Shape os = xs.size() == 1 ? Shape{1} : Shape(xs.begin(), xs.end() - (xs.empty() ? 0 : 1));
    os.push_back(static_cast<int64_t>(idx.size()));
    const int64_t k = static_cast<int64_t>(idx.size()), rows = d ? shape_numel(xs) / d : 0;
    py::array out(py::dtype("O"), std::vector<py::ssize_t>(os.begin(), os.end()));
    PyObject** o = static_cast<PyObject**>(out.mutable_data());
    PyObject** x = static_cast<PyObject**>(a.mutable_data());
    for (int64_t row = 0; row < rows; ++row)
      for (int64_t j = 0; j < k; ++j) {
        PyObject* v = x[row * d + idx[static_cast<size_t>(j)]];
        if (!v) v = Py_None;
        Py_INCREF(v);
        Py_XDECREF(o[row * k + j]);
        o[row * k + j] = v;
      }
    return value_from_py(out, false);
  }
};

// DictVectorizer: a map -> [1, len(vocabulary)], each vocabulary entry's value or 0; map keys not in
// the vocabulary are ignored. Keys str (string_vocabulary) or int (int64_vocabulary).
class DictVectorizerKernel : public ObjectKernel {
 public:
  DictVectorizerKernel(std::string label, py::object strings, py::object ints, int out_dtype)
      : ObjectKernel(std::move(label)), out_dtype_(out_dtype) {
    if (strings.is_none() == ints.is_none())
      fail(ErrorKind::kInvalidModel, label_ + ": the native DictVectorizer takes exactly one vocabulary");
    if (!strings.is_none()) {
      svocab_ = std::make_unique<StringIndex>(strings);
      size_ = svocab_->size();
    } else {
      int64_t i = 0;
      for (auto k : ints) ivocab_[py::cast<int64_t>(k)] = i++;
      size_ = static_cast<size_t>(i);
    }
    next_.assign(size_, -1);
  }
  // Vocabulary entries that repeat a key: StringIndex / ivocab_ hold the last position, next_
  // chains back to the earlier ones, so every position of a key gets its value.
  void chain_duplicates(py::object strings, py::object ints) {
    std::unordered_map<std::string, int64_t> last_s;
    std::unordered_map<int64_t, int64_t> last_i;
    int64_t i = 0;
    if (!strings.is_none()) {
      for (auto k : strings) {
        auto [it, fresh] = last_s.emplace(py::cast<std::string>(k), i);
        if (!fresh) next_[static_cast<size_t>(i)] = it->second, it->second = i;
        ++i;
      }
    } else {
      for (auto k : ints) {
        auto [it, fresh] = last_i.emplace(py::cast<int64_t>(k), i);
        if (!fresh) next_[static_cast<size_t>(i)] = it->second, it->second = i;
        ++i;
      }
    }
  }
  Value compute(const Value& in) override {
    PyObject* m = map_input(in, label_);
    const int64_t c = static_cast<int64_t>(size_);
    Tensor t = Tensor::empty(out_dtype_, Shape{1, c}, label_ + " output");
    if (c) std::memset(t.data, 0, t.nbytes());
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    std::string scratch;
    while (PyDict_Next(m, &pos, &k, &v)) {
      int64_t at = -1;
      if (PyUnicode_Check(k) || PyBytes_Check(k)) {
        if (!svocab_) fail(ErrorKind::kInvalidArgument, label_ + ": a map with string keys needs string_vocabulary");
        at = svocab_->find(k, scratch);
      } else {
        int64_t key;
        if (!map_int_key(k, key)) {
          PyErr_Clear();
          fail(ErrorKind::kInvalidType, label_ + ": map key " + std::string(py::repr(k)) + " is not a str or an int64");
        }
        if (svocab_)
          fail(ErrorKind::kInvalidArgument, label_ + ": a map with int64 keys needs int64_vocabulary");
        auto it = ivocab_.find(key);
        if (it != ivocab_.end()) at = it->second;
      }
      if (at < 0) continue;
      const double d = map_number(v, k, label_);
      for (int64_t j = at; j >= 0; j = next_[static_cast<size_t>(j)]) {
        if (out_dtype_ == kFloat) t.ptr<float>()[j] = static_cast<float>(d);
        else t.ptr<double>()[j] = d;
      }
    }
    return Value::of_tensor(std::move(t));
  }

 private:
  int out_dtype_;
  size_t size_ = 0;
  std::unique_ptr<StringIndex> svocab_;
  std::unordered_map<int64_t, int64_t> ivocab_;
  std::vector<int64_t> next_;
};

// CastMap of a map(int64, float): values in key order (DENSE) or at their key's position in
// [0, max_map) padded (SPARSE), cast to float, int64 (truncation; INT64_MIN when out of range, as
// x86's conversion gives) or string (std::to_string's "%f"; padding "0.f"), as [1, n].
class CastMapKernel : public ObjectKernel {
 public:
  enum To { kToFloat, kToString, kToInt64 };
  CastMapKernel(std::string label, int to, bool sparse, int64_t max_map)
      : ObjectKernel(std::move(label)), to_(static_cast<To>(to)), sparse_(sparse), max_map_(max_map) {}
  Value compute(const Value& in) override {
    PyObject* m = map_input(in, label_);
    std::vector<std::pair<int64_t, double>> items;
    items.reserve(static_cast<size_t>(PyDict_Size(m)));
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(m, &pos, &k, &v)) {
      int64_t key;
      if (!map_int_key(k, key)) {
        PyErr_Clear();
        if (PyUnicode_Check(k))
          fail(ErrorKind::kInvalidType, label_ + ": the map has string keys; CastMap reads int64 keys");
        fail(ErrorKind::kInvalidType, label_ + ": map key " + std::string(py::repr(k)) + " is not an int64");
      }
      if (PyUnicode_Check(v)) fail(ErrorKind::kInvalidType, label_ + ": string map values take the numpy kernel");
      items.emplace_back(key, map_number(v, k, label_));
    }
    std::sort(items.begin(), items.end(), [](auto& a, auto& b) { return a.first < b.first; });
    if (sparse_ && !items.empty() && items[0].first < 0)
      fail(ErrorKind::kInvalidArgument, label_ + ": negative keys are not allowed in SPARSE form (key " +
                                            std::to_string(items[0].first) + ")");
    const int64_t n = sparse_ ? max_map_ : static_cast<int64_t>(items.size());
    auto slot = [&](size_t i) { return sparse_ ? items[i].first : static_cast<int64_t>(i); };
    if (to_ == kToString) {
      py::array out(py::dtype("O"), std::vector<py::ssize_t>{1, static_cast<py::ssize_t>(n)});
      PyObject** o = static_cast<PyObject**>(out.mutable_data());
      auto put = [&](int64_t j, PyObject* s) {
        if (!s) throw py::error_already_set();
        Py_XDECREF(o[j]);
        o[j] = s;
      };
      if (sparse_) {
        py::str pad("0.f");
        for (int64_t j = 0; j < n; ++j) put(j, pad.inc_ref().ptr());
      }
      char buf[512];
      for (size_t i = 0; i < items.size(); ++i) {
        const int64_t j = slot(i);
        if (j >= n) break;
        const int len = std::snprintf(buf, sizeof buf, "%f", static_cast<double>(static_cast<float>(items[i].second)));
        put(j, PyUnicode_FromStringAndSize(buf, len < static_cast<int>(sizeof buf) ? len : sizeof buf - 1));
      }
      return value_from_py(out, false);
    }
    Tensor t = Tensor::empty(to_ == kToFloat ? kFloat : kInt64, Shape{1, n}, label_ + " output");
    if (n) std::memset(t.data, 0, t.nbytes());
    for (size_t i = 0; i < items.size(); ++i) {
      const int64_t j = slot(i);
      if (j >= n) break;
      const float f = static_cast<float>(items[i].second);
      if (to_ == kToFloat) {
        t.ptr<float>()[j] = f;
      } else {
        const bool fits = f >= -9.223372036854775808e18f && f < 9.223372036854775808e18f;
        t.ptr<int64_t>()[j] = fits ? static_cast<int64_t>(f) : INT64_MIN;
      }
    }
    return Value::of_tensor(std::move(t));
  }

 private:
  To to_;
  bool sparse_;
  int64_t max_map_;
};

}  // namespace

py::list zipmap_rows(PyObject* const* labels, int64_t c, const float* p, int64_t n) {
  py::list out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    py::dict d;
    for (int64_t j = 0; j < c; ++j) {
      py::object v = py::reinterpret_steal<py::object>(PyFloat_FromDouble(p[i * c + j]));
      if (!v || PyDict_SetItem(d.ptr(), labels[j], v.ptr()) != 0) throw py::error_already_set();
    }
    PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), d.release().ptr());
  }
  return out;
}

namespace {

std::string type_name_of(py::handle o) { return py::str(py::type::of(o).attr("__name__")); }
std::string repr_of(py::handle o) { return py::repr(o); }

// The text of the Python exception being raised (cleared).
std::string take_error_text() {
  py::error_already_set e;
  return py::str(e.value());
}

}  // namespace

py::dict map_feed_value(const std::string& name, int key_code, int value_code, const std::string& type_str,
                        py::handle value) {
  const std::string head = "input '" + name + "'";
  if (py::isinstance<py::array>(value))
    fail(ErrorKind::kInvalidType, head + " is a " + type_str + ": expected a dict, got a numpy array");
  if (!PyDict_Check(value.ptr()))
    fail(ErrorKind::kInvalidType, head + " is a " + type_str + ": expected a dict, got " + type_name_of(value));
  PyObject* m = value.ptr();
  if (PyDict_Size(m) == 0)
    fail(ErrorKind::kInvalidArgument, head + ": the dict is empty (a map input needs at least one entry)");
  PyObject *k, *v;
  Py_ssize_t pos = 0;
  PyDict_Next(m, &pos, &k, &v);
  const bool str_keys = PyUnicode_Check(k);
  if (!str_keys && !PyLong_Check(k) && !PyNumber_Check(k))
    fail(ErrorKind::kInvalidType, head + ": map keys must be int or str, got " + type_name_of(k));
  py::dict out;
  pos = 0;
  while (PyDict_Next(m, &pos, &k, &v)) {
    py::object key;
    if (str_keys) {
      key = py::reinterpret_steal<py::object>(PyObject_Str(k));
      if (!key) throw py::error_already_set();
    } else {
      key = py::reinterpret_steal<py::object>(PyNumber_Index(k));
      if (!key) {
        PyErr_Clear();
        fail(ErrorKind::kInvalidType, head + ": key " + repr_of(k) + " (" + type_name_of(k) +
                                          ") is not an integer; the first key made this a map with int64 keys");
      }
      int overflow = 0;
      PyLong_AsLongLongAndOverflow(key.ptr(), &overflow);
      if (overflow) fail(ErrorKind::kInvalidType, head + ": key " + repr_of(k) + " does not fit in int64");
    }
    double f;
    if (PyFloat_Check(v)) {
      f = PyFloat_AS_DOUBLE(v);
    } else if (PyUnicode_Check(v) || PyBytes_Check(v) || PyByteArray_Check(v) || v == Py_None || !PyNumber_Check(v)) {
      fail(ErrorKind::kInvalidType, head + ": value " + repr_of(v) + " of key " + repr_of(k) +
                                        " is not a number (dicts are fed as maps of float values)");
    } else {
      py::object fv = py::reinterpret_steal<py::object>(PyNumber_Float(v));
      if (!fv)
        fail(ErrorKind::kInvalidType, head + ": value " + repr_of(v) + " of key " + repr_of(k) +
                                          " does not convert to a float: " + take_error_text());
      f = PyFloat_AS_DOUBLE(fv.ptr());
    }
    py::object fv = py::reinterpret_steal<py::object>(PyFloat_FromDouble(static_cast<double>(static_cast<float>(f))));
    if (!fv || PyDict_SetItem(out.ptr(), key.ptr(), fv.ptr()) != 0) throw py::error_already_set();
  }
  const int got_key = str_keys ? kString : kInt64;
  if (key_code != got_key || value_code != kFloat) {
    const std::string kt = str_keys ? "string" : "int64";
    fail(ErrorKind::kInvalidType, head + " is a " + type_str + ", but a dict with " + (str_keys ? "str" : "int") +
                                      " keys is a map(" + kt + ",tensor(float)); dicts can only feed "
                                      "map(int64,tensor(float)) and map(string,tensor(float)) inputs (as in onnxruntime)");
  }
  py::list keys = py::reinterpret_steal<py::list>(PyDict_Keys(out.ptr()));
  if (PyList_Sort(keys.ptr()) != 0) throw py::error_already_set();
  py::dict sorted;
  for (auto key : keys)
    if (PyDict_SetItem(sorted.ptr(), key.ptr(), PyDict_GetItem(out.ptr(), key.ptr())) != 0) throw py::error_already_set();
  return sorted;
}

void bind_object_kernels(py::module_& m) {
  m.def("map_feed_value", &map_feed_value, py::arg("name"), py::arg("key_code"), py::arg("value_code"),
        py::arg("type_str"), py::arg("value"),
        "the map a dict fed for a map input is: keys converted (str, or int64 through __index__) and sorted, "
        "values rounded to float32; InvalidType / InvalidArgument naming the input when it cannot be one");
  py::class_<HostStep, std::shared_ptr<HostStep>>(
      m, "ObjectKernel",
      "a native kernel over Python-object values (string tensors, ZipMap's dicts): a host step that runs "
      "with the GIL held (plan.add_host_step)");
  m.def(
      "onehot_strings_kernel",
      [](const std::string& label, py::sequence cats, bool zeros) -> std::shared_ptr<HostStep> {
        return std::make_shared<OneHotStrings>(label, cats, zeros);
      },
      py::arg("label"), py::arg("cats"), py::arg("zeros"),
      "OneHotEncoder over string categories: float [..., len(cats)]; an unknown value gives zeros, or "
      "InvalidArgument when zeros is false");
  m.def(
      "string_lookup_kernel",
      [](const std::string& label, py::sequence keys, py::object values, py::object deflt)
          -> std::shared_ptr<HostStep> { return std::make_shared<StringLookup>(label, keys, values, deflt); },
      py::arg("label"), py::arg("keys"), py::arg("values"), py::arg("default"),
      "string -> value: keys (unique str), values (an integer / float32 / float64 array, or a list of str), "
      "default");
  m.def(
      "number_to_string_kernel",
      [](const std::string& label, py::array keys, py::sequence values, py::object deflt, py::object nan_value)
          -> std::shared_ptr<HostStep> {
        return std::make_shared<NumberToString>(label, keys, values, deflt, nan_value);
      },
      py::arg("label"), py::arg("keys"), py::arg("values"), py::arg("default"), py::arg("nan_value") = py::none(),
      "number -> str: keys (an int64/float32/float64 array; the first of equal keys wins), values (str), "
      "default, and the value NaN inputs take (None: the default)");
  m.def(
      "zipmap_kernel",
      [](const std::string& label, py::sequence labels) -> std::shared_ptr<HostStep> {
        return std::make_shared<ZipMapKernel>(label, labels);
      },
      py::arg("label"), py::arg("labels"), "ZipMap: (rows, len(labels)) float -> list of {label: float} dicts");
  m.def(
      "string_feature_extractor_kernel",
      [](const std::string& label) -> std::shared_ptr<HostStep> { return std::make_shared<StringFeatureExtractor>(label); },
      py::arg("label"), "ArrayFeatureExtractor of a string tensor X by int64 / int32 indices Y");
  m.def(
      "dict_vectorizer_kernel",
      [](const std::string& label, py::object strings, py::object ints, int out_dtype) -> std::shared_ptr<HostStep> {
        if (out_dtype != kFloat && out_dtype != kDouble)
          fail(ErrorKind::kInvalidModel, label + ": the native DictVectorizer writes float or double");
        auto k = std::make_shared<DictVectorizerKernel>(label, strings, ints, out_dtype);
        k->chain_duplicates(strings, ints);
        return k;
      },
      py::arg("label"), py::arg("string_vocabulary"), py::arg("int64_vocabulary"), py::arg("out_dtype"),
      "DictVectorizer of a map with float values: [1, len(vocabulary)] of out_dtype (1 float, 11 double)");
  m.def(
      "cast_map_kernel",
      [](const std::string& label, int to, bool sparse, int64_t max_map) -> std::shared_ptr<HostStep> {
        if (to < 0 || to > 2) fail(ErrorKind::kInvalidModel, label + ": cast_to code must be 0, 1 or 2");
        return std::make_shared<CastMapKernel>(label, to, sparse, max_map);
      },
      py::arg("label"), py::arg("cast_to"), py::arg("sparse"), py::arg("max_map"),
      "CastMap of a map(int64, float): cast_to 0 float, 1 string, 2 int64; DENSE or SPARSE (max_map)");
  m.def(
      "zipmap_rows",
      [](py::sequence labels, py::array_t<float, py::array::c_style | py::array::forcecast> x) {
        if (x.ndim() != 2 || static_cast<size_t>(x.shape(1)) != py::len(labels))
          throw py::value_error("zipmap_rows: x must be (rows, len(labels))");
        py::list held(labels);  // owns the labels while the rows are built
        std::vector<PyObject*> keys;
        for (auto k : held) keys.push_back(k.ptr());
        return zipmap_rows(keys.data(), x.shape(1), x.data(), x.shape(0));
      },
      "[dict(zip(labels, row)) for row in x.tolist()] for a float32 (rows, len(labels)) x");
}

}  // namespace onnxfast
