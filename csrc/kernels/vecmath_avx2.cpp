// vecmath for the avx2 tier (flags set in CMakeLists.txt).
#define ONNXFAST_VEC_NS vec_avx2
#define ONNXFAST_VEC_NAME "avx2"
#include "vecmath_impl.h"
