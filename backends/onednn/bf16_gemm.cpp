#include "bf16_gemm.hpp"

#include "panel_split.hpp"
#include "simd_gelu.hpp"
#include "simd_lanes.hpp"

#include <immintrin.h>

#include <cstring>
#include <stdexcept>

// The kernels are compiled for AVX512_BF16 alone (the build targets plain x86-64) and only
// called where bf16_gemm_available() says the CPU has it.
#define VB_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define VB_BF16_INLINE __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), always_inline)) inline

namespace onednn_backend {

bool bf16_gemm_available() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
}

uint16_t to_bf16(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // quiet NaN
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

Bf16Weights::Bf16Weights(const float* w, int64_t n, int64_t k) : N(n), K(k), panels((n + 63) / 64) {
  if (K % 2 != 0) throw std::logic_error("bf16_gemm: K must be even");
  const size_t values = static_cast<size_t>(panels * K * 64);
  storage.reset(new uint16_t[values + 32]());
  data = storage.get() + (32 - reinterpret_cast<uintptr_t>(storage.get()) / 2 % 32) % 32;
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t c = 0; c < 64 && p * 64 + c < N; ++c)
      for (int64_t kk = 0; kk < K; ++kk)
        data[p * K * 64 + (kk / 2) * 128 + c * 2 + kk % 2] = to_bf16(w[(p * 64 + c) * K + kk]);
}

namespace {

// The epilogue's terms are template flags, as in vnni_gemm.cpp (a run-time test per term there
// cost 5%-20% of a small K's speed).
template <bool GELU, bool RES, bool BF16_OUT>
VB_BF16_INLINE void store_vector(const Bf16Epilogue& e, int64_t m, int64_t n, int64_t N, __mmask16 k, __m512 acc,
                                 void* y) {
  __m512 v = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(k, e.bias + n));
  if constexpr (GELU) {
    f32x16 g = reinterpret_cast<f32x16>(v);
    gelu_erf16(g);
    v = reinterpret_cast<__m512>(g);
  }
  if constexpr (RES) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, e.residual + m * N + n));
  if constexpr (BF16_OUT) {
    _mm256_mask_storeu_epi16(static_cast<uint16_t*>(y) + m * N + n, k, reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)));
  } else {
    _mm512_mask_storeu_ps(static_cast<float*>(y) + m * N + n, k, v);
  }
}

// One row of a tile's 64 columns through the epilogue into y (columns from n0, up to N).
template <bool GELU, bool RES, bool BF16_OUT>
VB_BF16_INLINE void store_row(const Bf16Epilogue& e, int64_t m, int64_t n0, int64_t N, void* y, __m512 a0, __m512 a1,
                              __m512 a2, __m512 a3) {
  if (n0 + 64 <= N) {  // every panel but the last of an N that 64 does not divide: no masks
    store_vector<GELU, RES, BF16_OUT>(e, m, n0, N, 0xFFFF, a0, y);
    store_vector<GELU, RES, BF16_OUT>(e, m, n0 + 16, N, 0xFFFF, a1, y);
    store_vector<GELU, RES, BF16_OUT>(e, m, n0 + 32, N, 0xFFFF, a2, y);
    store_vector<GELU, RES, BF16_OUT>(e, m, n0 + 48, N, 0xFFFF, a3, y);
    return;
  }
  const __m512 acc[4] = {a0, a1, a2, a3};
  for (int j = 0; j < 4; ++j) {
    const int64_t n = n0 + 16 * j;
    if (n >= N) break;
    store_vector<GELU, RES, BF16_OUT>(e, m, n, N, first_lanes(N - n), acc[j], y);
  }
}

// A k-pair of one row's x in every lane.
VB_BF16_INLINE __m512bh broadcast2(const uint16_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return reinterpret_cast<__m512bh>(_mm512_set1_epi32(v));
}

// Rows [m, m + R) against one panel (columns n0 .. n0 + 63) over all of K. Each accumulator
// is a named variable: as an array GCC spilled them to the stack every step (vnni_gemm.cpp).
#define VB_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
template <int R, bool GELU, bool RES, bool BF16_OUT>
VB_BF16 void tile(const uint16_t* x, int64_t ldx, const uint16_t* panel, int64_t K, const Bf16Epilogue& e, int64_t m,
                  int64_t n0, int64_t N, void* y) {
#define VB_DECLARE(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = c##r##0, c##r##2 = c##r##0, c##r##3 = c##r##0;
  VB_ROWS(VB_DECLARE)
#undef VB_DECLARE
  const uint16_t* b = panel;
  for (int64_t k = 0; k < K; k += 2, b += 128) {
    const __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_load_si512(b)),
                   b1 = reinterpret_cast<__m512bh>(_mm512_load_si512(b + 32)),
                   b2 = reinterpret_cast<__m512bh>(_mm512_load_si512(b + 64)),
                   b3 = reinterpret_cast<__m512bh>(_mm512_load_si512(b + 96));
#define VB_STEP(r)                                 \
  if constexpr (R > r) {                           \
    const __m512bh a = broadcast2(x + r * ldx + k); \
    c##r##0 = _mm512_dpbf16_ps(c##r##0, a, b0);    \
    c##r##1 = _mm512_dpbf16_ps(c##r##1, a, b1);    \
    c##r##2 = _mm512_dpbf16_ps(c##r##2, a, b2);    \
    c##r##3 = _mm512_dpbf16_ps(c##r##3, a, b3);    \
  }
    VB_ROWS(VB_STEP)
#undef VB_STEP
  }
#define VB_STORE(r) \
  if constexpr (R > r) store_row<GELU, RES, BF16_OUT>(e, m + r, n0, N, y, c##r##0, c##r##1, c##r##2, c##r##3);
  VB_ROWS(VB_STORE)
#undef VB_STORE
}
#undef VB_ROWS

// Rows [m0, m1) against one panel: tiles of 6 rows, then one of the rest.
template <bool GELU, bool RES, bool BF16_OUT>
VB_BF16 void rows_panel(const uint16_t* x, int64_t ldx, const Bf16Weights& w, int64_t p, const Bf16Epilogue& e,
                        int64_t m0, int64_t m1, void* y) {
  const uint16_t* panel = w.data + p * w.K * 64;
  const int64_t n0 = p * 64;
  int64_t m = m0;
  for (; m + 6 <= m1; m += 6) tile<6, GELU, RES, BF16_OUT>(x + m * ldx, ldx, panel, w.K, e, m, n0, w.N, y);
  const uint16_t* xr = x + m * ldx;
  switch (m1 - m) {
    case 5: tile<5, GELU, RES, BF16_OUT>(xr, ldx, panel, w.K, e, m, n0, w.N, y); break;
    case 4: tile<4, GELU, RES, BF16_OUT>(xr, ldx, panel, w.K, e, m, n0, w.N, y); break;
    case 3: tile<3, GELU, RES, BF16_OUT>(xr, ldx, panel, w.K, e, m, n0, w.N, y); break;
    case 2: tile<2, GELU, RES, BF16_OUT>(xr, ldx, panel, w.K, e, m, n0, w.N, y); break;
    case 1: tile<1, GELU, RES, BF16_OUT>(xr, ldx, panel, w.K, e, m, n0, w.N, y); break;
    default: break;
  }
}

typedef void (*RowsPanel)(const uint16_t*, int64_t, const Bf16Weights&, int64_t, const Bf16Epilogue&, int64_t,
                          int64_t, void*);

// The instantiation for an epilogue, indexed by gelu + 2 residual + 4 bf16 output.
const RowsPanel kRowsPanel[8] = {
    rows_panel<false, false, false>, rows_panel<true, false, false>, rows_panel<false, true, false>,
    rows_panel<true, true, false>,   rows_panel<false, false, true>, rows_panel<true, false, true>,
    rows_panel<false, true, true>,   rows_panel<true, true, true>,
};

}  // namespace

void bf16_gemm(const uint16_t* x, int64_t M, int64_t ldx, const Bf16Weights& w, const Bf16Epilogue& e, void* y) {
  if (M <= 0) return;
  if (!e.bias) throw std::logic_error("bf16_gemm: the epilogue needs a bias (zeros for none)");
  const RowsPanel rows = kRowsPanel[(e.gelu ? 1 : 0) + (e.residual ? 2 : 0) + (e.bf16_output ? 4 : 0)];
  split_rows_panels(M, 2 * w.K, w.panels, [&](int64_t p, int64_t m0, int64_t m1) { rows(x, ldx, w, p, e, m0, m1, y); });
}

}  // namespace onednn_backend
