// Element types, numbered exactly as onnx.TensorProto.DataType so the Python side and the
// native side share one vocabulary. Item sizes follow the numpy representation used at the
// API (ml_dtypes stores int4/float8 one element per byte).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace onnxfast {

enum DType : int {
  kUndefined = 0,
  kFloat = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kUInt16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kDouble = 11,
  kUInt32 = 12,
  kUInt64 = 13,
  kComplex64 = 14,
  kComplex128 = 15,
  kBFloat16 = 16,
  kMaxDType = 32,
};

// Item size in bytes of the in-memory (numpy) representation; 0 for unknown / non-POD (string).
size_t dtype_itemsize(int dtype);
void set_dtype_itemsize(int dtype, size_t size);
// ONNX type string element, e.g. "float", "int64" (the standard ones built in; the rest filled from Python).
const std::string& dtype_name(int dtype);
void set_dtype_name(int dtype, const std::string& name);

}  // namespace onnxfast
