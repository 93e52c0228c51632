// simd_gelu.hpp: GELU in erf's form (timm's nn.GELU) on 16 floats at once, for the int8 MLP's
// row scan (onednn_kernels.cpp). A header of its own so a unit test can hold it against
// std::erf without loading the plugin.
#pragma once

namespace onednn_backend {

// One zmm, two ymm or four xmm, whichever the including function's target has.
typedef float f32x16 __attribute__((vector_size(64)));

// erf is the rational approximation Eigen, XLA and oneDNN's OpenCL kernels use for float erf:
// the argument clamped to [-4, 4] (erf is exactly +-1 in float32 beyond, so GELU is exactly 0
// below about -5.6), erf(x) = x P(x^2) / Q(x^2), P of degree 6 and Q of degree 4 in x^2.
// GELU within 5e-7 of the exact one on |x| <= 3, 1.1e-6 below -3 and 2.5e-7 of it (two
// float32 ulps) above 3 (tests/unit/simd_gelu_test.cpp);
// 17 vector operations and one division, no exponential. Not for infinite inputs
// (-inf gives NaN): the int8 path it serves has no meaning for them anyway.
// In place, by reference: a 64-byte vector passed by value would depend on the caller's ISA.
inline __attribute__((always_inline)) void gelu_erf16(f32x16& v) {
  f32x16 x = v * 0.70710678118654752f;
  x = x < -4.0f ? f32x16{} - 4.0f : x;
  x = x > 4.0f ? f32x16{} + 4.0f : x;
  const f32x16 x2 = x * x;
  f32x16 p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  f32x16 q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  const f32x16 erf = x * p / q;
  const f32x16 half = v * 0.5f;
  v = half + half * erf;
}

}  // namespace onednn_backend
