// bit_cast<To>(from): the bits of a value as another type of the same size (std::bit_cast before C++20),
// for the float / integer tricks of vecmath and the float16 conversions.
#pragma once
#include <cstring>

namespace onnxfast {

template <class To, class From>
inline To bit_cast(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs two types of one size");
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

}  // namespace onnxfast
