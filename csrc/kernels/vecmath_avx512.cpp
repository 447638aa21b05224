// vecmath for the avx512 tier (flags set in CMakeLists.txt).
#define ONNXFAST_VEC_NS vec_avx512
#define ONNXFAST_VEC_NAME "avx512"
#include "vecmath_impl.h"
