// Error kinds raised by native code. Each maps to a Python exception class defined in
// onnxfast/errors.py (registered at import), so users see standard Python classes.
#pragma once
#include <stdexcept>
#include <string>

namespace onnxfast {

enum class ErrorKind {
  kInvalidArgument,  // ValueError
  kInvalidType,      // TypeError
  kNotImplemented,   // NotImplementedError
  kAllocation,       // MemoryError
  kIndex,            // IndexError
  kZeroDivision,     // ZeroDivisionError
  kOverflow,         // OverflowError
  kTerminated,       // RuntimeError (RunOptions.terminate)
  kRuntime,          // RuntimeError
  kInvalidModel,     // ValueError (InvalidModel: a bad attribute or input rank, found at session creation)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void fail(ErrorKind kind, const std::string& msg) { throw Error(kind, msg); }

}  // namespace onnxfast
