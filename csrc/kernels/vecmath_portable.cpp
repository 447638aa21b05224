// vecmath for the portable tier (flags set in CMakeLists.txt).
#define ONNXFAST_VEC_NS vec_portable
#define ONNXFAST_VEC_NAME "portable"
#include "vecmath_impl.h"
