// fused_attention.cpp: see fused_attention.hpp. Written on GCC's vector extensions (a 16-float
// vector) and compiled three times, for AVX-512, AVX2+FMA and plain x86-64, picked once at
// run time: the build itself targets plain x86-64.
#include "fused_attention.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

// A 64-byte vector passed between inlined helpers: no ABI crosses a call here.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace onednn_backend {

namespace {

typedef float v16 __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

#define VB_INLINE inline __attribute__((always_inline))

VB_INLINE v16 splat(float x) { return v16{} + x; }

VB_INLINE v16 vmax(v16 a, v16 b) { return a > b ? a : b; }

// e^x, Cephes' expf: x = n ln2 + r, |r| <= ln2 / 2, e^r by its degree-6 polynomial, 2^n put into
// the exponent bits; about 1 ulp. x is clamped to [-87.3, 88.7] first, so -inf (a masked score)
// gives ~1e-38 rather than a NaN, and the softmax's sum (>= 1, its maximum's e^0) absorbs it.
VB_INLINE v16 vexp(v16 x) {
  x = x < -87.3f ? splat(-87.3f) : x;
  x = x > 88.7f ? splat(88.7f) : x;
  // round(x / ln2) by the 1.5 * 2^23 trick: exact for |x / ln2| < 2^22.
  const v16 magic = splat(12582912.0f);
  v16 t = x * 1.44269504088896341f + magic;
  v16 n = t - magic;
  v16i ni = (v16i)t - (v16i)magic;  // a vector cast keeps the bits
  v16 r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  v16 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return (v16)((v16i)p + (ni << 23));
}

// st[j] = e^(st[j] - max_j st[j]) per lane; returns their sums. Two chains each for the
// maximum and the sum, so that neither waits on every step.
VB_INLINE v16 softmax_numerators(v16* st, int64_t T) {
  v16 top0 = st[0], top1 = st[T - 1];
  for (int64_t jj = 1; jj + 1 < T; jj += 2) {
    top0 = vmax(top0, st[jj]);
    top1 = vmax(top1, st[jj + 1]);
  }
  const v16 top = vmax(top0, top1);
  v16 sum0{}, sum1{};
  int64_t jj = 0;
  for (; jj + 2 <= T; jj += 2) {
    v16 e0 = vexp(st[jj] - top), e1 = vexp(st[jj + 1] - top);
    st[jj] = e0;
    st[jj + 1] = e1;
    sum0 += e0;
    sum1 += e1;
  }
  if (jj < T) {
    st[jj] = vexp(st[jj] - top);
    sum0 += st[jj];
  }
  return sum0 + sum1;
}

// Adds the score bias [heads, T, T] of head h to the block of queries [q0, q0 + rows).
VB_INLINE void add_bias(const float* bias, int64_t T, int64_t h, int64_t q0, int64_t rows, v16* st) {
  const float* b = bias + h * T * T;
  for (int64_t j = 0; j < T; ++j)
    for (int64_t i = 0; i < rows; ++i) st[j][i] += b[(q0 + i) * T + j];
}

// qt[e][i] = scale * q[q0 + i, e] for the block's rows (the rest 0): q transposed, so that one
// vector holds an entry of all 16 queries.
VB_INLINE void transpose_queries(const AttentionShape& s, const float* qkv, int64_t h, int64_t q0, int64_t rows,
                                 float* qt) {
  const int64_t hd = s.D / s.heads, stride = 3 * s.D;
  std::memset(qt, 0, static_cast<size_t>(hd * kQueryBlock) * sizeof(float));
  for (int64_t i = 0; i < rows; ++i) {
    const float* q = qkv + (q0 + i) * stride + h * hd;
    for (int64_t e = 0; e < hd; ++e) qt[e * kQueryBlock + i] = q[e] * s.scale;
  }
}

// out[q0 + i, h*hd + e] = ot[e][i] / sum[i]: the block's rows back in the [T, D] layout.
VB_INLINE void store_rows(const AttentionShape& s, v16* ot, v16 sum, int64_t h, int64_t q0, int64_t rows, float* out) {
  const int64_t hd = s.D / s.heads;
  v16 inverse = 1.0f / sum;
  for (int64_t e = 0; e < hd; ++e) ot[e] *= inverse;
  for (int64_t i = 0; i < rows; ++i) {
    float* o = out + (q0 + i) * s.D + h * hd;
    for (int64_t e = 0; e < hd; ++e) o[e] = ot[e][i];
  }
}

// Scores of the block's 16 queries (qt: [hd][16], scaled) against keys [j0, j0 + N):
// st[j] = sum_e qt[e] * k[j, e], k's rows `stride` floats apart.
template <int N>
VB_INLINE void score_keys(const float* qt, const float* k, int64_t stride, int64_t hd, v16* st) {
  v16 acc[N];
  for (int u = 0; u < N; ++u) acc[u] = v16{};
  for (int64_t e = 0; e < hd; ++e) {
    v16 q = *reinterpret_cast<const v16*>(qt + e * kQueryBlock);
#pragma GCC unroll 16
    for (int u = 0; u < N; ++u) acc[u] += q * k[u * stride + e];
  }
  for (int u = 0; u < N; ++u) st[u] = acc[u];
}

// ot[e] = sum_j st[j] * v[j, e] for head entries [e0, e0 + N), v's rows `stride` floats apart.
template <int N>
VB_INLINE void mix_values(const v16* st, int64_t T, const float* v, int64_t stride, v16* ot) {
  v16 acc[N];
  for (int u = 0; u < N; ++u) acc[u] = v16{};
  for (int64_t j = 0; j < T; ++j) {
    v16 p = st[j];
    const float* row = v + j * stride;
#pragma GCC unroll 16
    for (int u = 0; u < N; ++u) acc[u] += p * row[u];
  }
  for (int u = 0; u < N; ++u) ot[u] = acc[u];
}

VB_INLINE void block_impl(const AttentionShape& s, const float* qkv, const float* bias, int64_t h, int64_t q0,
                          float* out, float* work) {
  const int64_t T = s.T, D = s.D, hd = D / s.heads, stride = 3 * D;
  const int64_t rows = std::min(kQueryBlock, T - q0);
  // work: qt [hd][16] (q transposed and scaled; lanes past T are 0), st [T][16] (scores, then
  // their exponentials), ot [hd][16] (the mix before the division by the sums).
  float* qt = work;
  v16* st = reinterpret_cast<v16*>(work + hd * kQueryBlock);
  v16* ot = st + T;
  transpose_queries(s, qkv, h, q0, rows, qt);

  const float* k = qkv + D + h * hd;
  int64_t j = 0;
  for (; j + 8 <= T; j += 8) score_keys<8>(qt, k + j * stride, stride, hd, st + j);
  // The last keys in one pass too: one at a time, each would wait on its own FMA chain.
  switch (T - j) {
    case 7: score_keys<7>(qt, k + j * stride, stride, hd, st + j); break;
    case 6: score_keys<6>(qt, k + j * stride, stride, hd, st + j); break;
    case 5: score_keys<5>(qt, k + j * stride, stride, hd, st + j); break;
    case 4: score_keys<4>(qt, k + j * stride, stride, hd, st + j); break;
    case 3: score_keys<3>(qt, k + j * stride, stride, hd, st + j); break;
    case 2: score_keys<2>(qt, k + j * stride, stride, hd, st + j); break;
    case 1: score_keys<1>(qt, k + j * stride, stride, hd, st + j); break;
    default: break;
  }
  if (bias) add_bias(bias, T, h, q0, rows, st);
  const v16 sum = softmax_numerators(st, T);

  const float* v = qkv + 2 * D + h * hd;
  int64_t e0 = 0;
  for (; e0 + 8 <= hd; e0 += 8) mix_values<8>(st, T, v + e0, stride, ot + e0);
  for (; e0 + 4 <= hd; e0 += 4) mix_values<4>(st, T, v + e0, stride, ot + e0);
  for (; e0 < hd; ++e0) mix_values<1>(st, T, v + e0, stride, ot + e0);

  store_rows(s, ot, sum, h, q0, rows, out);
}

__attribute__((target("avx512f,fma"))) void block_avx512(const AttentionShape& s, const float* qkv, const float* bias,
                                                         int64_t h, int64_t q0, float* out, float* work) {
  block_impl(s, qkv, bias, h, q0, out, work);
}

__attribute__((target("avx2,fma"))) void block_avx2(const AttentionShape& s, const float* qkv, const float* bias,
                                                    int64_t h, int64_t q0, float* out, float* work) {
  block_impl(s, qkv, bias, h, q0, out, work);
}

void block_plain(const AttentionShape& s, const float* qkv, const float* bias, int64_t h, int64_t q0, float* out,
                 float* work) {
  block_impl(s, qkv, bias, h, q0, out, work);
}

using BlockFn = void (*)(const AttentionShape&, const float*, const float*, int64_t, int64_t, float*, float*);

BlockFn pick_block() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return block_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return block_avx2;
  return block_plain;
}

// ---- bf16 pairs on vdpbf16ps ----------------------------------------------------------
// vdpbf16ps adds a.lo * b.lo + a.hi * b.hi per 32-bit lane, so each operand holds two bf16 of
// the same sum side by side: a pair of head entries (e, e+1) for q . k, a pair of keys (j, j+1)
// for p @ v. A lane of the left operand is a query; the right one is broadcast.
#define VB_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))

// 32-bit lanes (lo, hi) = (bf16(a[i]), bf16(b[i])), rounded to nearest even.
VB_BF16 VB_INLINE __m512i interleave_bf16(__m512 a, __m512 b) {
  const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  // cvtne2ps puts b's words above a's: words 0-15 = a, 16-31 = b.
  return _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(b, a));
}

template <int N>
VB_BF16 VB_INLINE void score_keys_bf16(const __m512i* qt2, const uint32_t* k2, int64_t pairs, v16* st) {
  __m512 acc[N];
  for (int u = 0; u < N; ++u) acc[u] = _mm512_setzero_ps();
  for (int64_t e = 0; e < pairs; ++e) {
    __m512bh q = (__m512bh)qt2[e];
#pragma GCC unroll 16
    for (int u = 0; u < N; ++u)
      acc[u] = _mm512_dpbf16_ps(acc[u], q, (__m512bh)_mm512_set1_epi32(static_cast<int>(k2[u * pairs + e])));
  }
  for (int u = 0; u < N; ++u) st[u] = (v16)acc[u];
}

template <int N>
VB_BF16 VB_INLINE void mix_values_bf16(const __m512i* p2, int64_t pairs, const uint32_t* v2, int64_t hd, v16* ot) {
  __m512 acc[N];
  for (int u = 0; u < N; ++u) acc[u] = _mm512_setzero_ps();
  for (int64_t j = 0; j < pairs; ++j) {
    __m512bh p = (__m512bh)p2[j];
    const uint32_t* row = v2 + j * hd;
#pragma GCC unroll 16
    for (int u = 0; u < N; ++u) acc[u] = _mm512_dpbf16_ps(acc[u], p, (__m512bh)_mm512_set1_epi32(static_cast<int>(row[u])));
  }
  for (int u = 0; u < N; ++u) ot[u] = (v16)acc[u];
}

// Work of one head: k2 [T][hd/2] (K's rows in bf16, pairs of entries), v2 [T'/2][hd] (pairs
// of V's rows j, j+1 per entry; T' = T rounded up to even, the missing row 0), qt [hd][16],
// qt2 [hd/2][16], st [T'][16], p2 [T'/2][16], ot [hd][16]; each part 64-byte aligned.
struct Bf16Work {
  uint32_t *k2, *v2;
  float* qt;
  __m512i *qt2, *p2;
  v16 *st, *ot;
};

size_t round64(size_t floats) { return (floats + 15) / 16 * 16; }

Bf16Work carve_bf16(const AttentionShape& s, float* work) {
  const size_t hd = static_cast<size_t>(s.D / s.heads), T = static_cast<size_t>(s.T), pairs_t = (T + 1) / 2;
  Bf16Work w;
  w.k2 = reinterpret_cast<uint32_t*>(work);
  work += round64(T * hd / 2);
  w.v2 = reinterpret_cast<uint32_t*>(work);
  work += round64(pairs_t * hd);
  w.qt = work;
  work += hd * kQueryBlock;
  w.qt2 = reinterpret_cast<__m512i*>(work);
  work += hd / 2 * kQueryBlock;
  w.st = reinterpret_cast<v16*>(work);
  work += 2 * pairs_t * kQueryBlock;
  w.p2 = reinterpret_cast<__m512i*>(work);
  work += pairs_t * kQueryBlock;
  w.ot = reinterpret_cast<v16*>(work);
  return w;
}

VB_BF16 void head_bf16(const AttentionShape& s, const float* qkv, const float* bias, int64_t h, int64_t block0,
                       int64_t block1, float* out, float* work) {
  const int64_t T = s.T, D = s.D, hd = D / s.heads, stride = 3 * D, pairs_e = hd / 2, pairs_t = (T + 1) / 2;
  const Bf16Work w = carve_bf16(s, work);
  // Entries of a row in 16s; the last partial 16 under a mask.
  const int64_t chunks = (hd + 15) / 16;
  auto mask_of = [&](int64_t c) -> __mmask16 {
    int64_t left = hd - c * 16;
    return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
  };
  for (int64_t j = 0; j < T; ++j) {  // K's rows in bf16: consecutive entries pair up as they lie
    const float* k = qkv + j * stride + D + h * hd;
    auto* dst = reinterpret_cast<uint16_t*>(w.k2 + j * pairs_e);
    for (int64_t c = 0; c < chunks; ++c) {
      __m256i b = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask_of(c), k + c * 16));
      _mm256_mask_storeu_epi16(dst + c * 16, mask_of(c), b);
    }
  }
  for (int64_t jp = 0; jp < pairs_t; ++jp) {  // V's rows 2jp and 2jp+1, entry by entry
    const float* v0 = qkv + 2 * jp * stride + 2 * D + h * hd;
    const bool second = 2 * jp + 1 < T;
    for (int64_t c = 0; c < chunks; ++c) {
      __m512 a = _mm512_maskz_loadu_ps(mask_of(c), v0 + c * 16);
      __m512 b = second ? _mm512_maskz_loadu_ps(mask_of(c), v0 + stride + c * 16) : _mm512_setzero_ps();
      _mm512_mask_storeu_epi32(w.v2 + jp * hd + c * 16, mask_of(c), interleave_bf16(a, b));
    }
  }
  if (T % 2) w.st[T] = v16{};  // the pad row's probabilities: 0 x the pad row of V

  for (int64_t block = block0; block < block1; ++block) {
    const int64_t q0 = block * kQueryBlock, rows = std::min(kQueryBlock, T - q0);
    transpose_queries(s, qkv, h, q0, rows, w.qt);
    for (int64_t e = 0; e < pairs_e; ++e) {
      __m512 a = _mm512_load_ps(w.qt + 2 * e * kQueryBlock), b = _mm512_load_ps(w.qt + (2 * e + 1) * kQueryBlock);
      w.qt2[e] = interleave_bf16(a, b);
    }
    int64_t j = 0;
    for (; j + 8 <= T; j += 8) score_keys_bf16<8>(w.qt2, w.k2 + j * pairs_e, pairs_e, w.st + j);
    switch (T - j) {
      case 7: score_keys_bf16<7>(w.qt2, w.k2 + j * pairs_e, pairs_e, w.st + j); break;
      case 6: score_keys_bf16<6>(w.qt2, w.k2 + j * pairs_e, pairs_e, w.st + j); break;
      case 5: score_keys_bf16<5>(w.qt2, w.k2 + j * pairs_e, pairs_e, w.st + j); break;
      case 4: score_keys_bf16<4>(w.qt2, w.k2 + j * pairs_e, pairs_e, w.st + j); break;
      case 3: score_keys_bf16<3>(w.qt2, w.k2 + j * pairs_e, pairs_e, w.st + j); break;
      case 2: score_keys_bf16<2>(w.qt2, w.k2 + j * pairs_e, pairs_e, w.st + j); break;
      case 1: score_keys_bf16<1>(w.qt2, w.k2 + j * pairs_e, pairs_e, w.st + j); break;
      default: break;
    }
    if (bias) add_bias(bias, T, h, q0, rows, w.st);
    const v16 sum = softmax_numerators(w.st, T);
    for (int64_t jp = 0; jp < pairs_t; ++jp) w.p2[jp] = interleave_bf16((__m512)w.st[2 * jp], (__m512)w.st[2 * jp + 1]);

    int64_t e0 = 0;
    for (; e0 + 8 <= hd; e0 += 8) mix_values_bf16<8>(w.p2, pairs_t, w.v2 + e0, hd, w.ot + e0);
    for (; e0 + 4 <= hd; e0 += 4) mix_values_bf16<4>(w.p2, pairs_t, w.v2 + e0, hd, w.ot + e0);
    for (; e0 < hd; ++e0) mix_values_bf16<1>(w.p2, pairs_t, w.v2 + e0, hd, w.ot + e0);
    store_rows(s, w.ot, sum, h, q0, rows, out);
  }
}

}  // namespace

size_t attention_block_floats(const AttentionShape& s) {
  const int64_t hd = s.D / s.heads;
  // + 16: room to align the vectors to 64 bytes.
  return static_cast<size_t>((2 * hd + s.T) * kQueryBlock + 16);
}

void attention_block(const AttentionShape& s, const float* qkv, const float* bias, int64_t h, int64_t q0, float* out,
                     float* work) {
  static const BlockFn block = pick_block();
  auto aligned = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(work) + 63) & ~uintptr_t{63});
  block(s, qkv, bias, h, q0, out, aligned);
}

bool has_bf16_attention() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}

size_t attention_head_bf16_floats(const AttentionShape& s) {
  const size_t hd = static_cast<size_t>(s.D / s.heads), T = static_cast<size_t>(s.T), pairs_t = (T + 1) / 2;
  return round64(T * hd / 2) + round64(pairs_t * hd) + hd * kQueryBlock + hd / 2 * kQueryBlock +
         3 * pairs_t * kQueryBlock + hd * kQueryBlock + 16;
}

void attention_head_bf16(const AttentionShape& s, const float* qkv, const float* bias, int64_t h, int64_t block0,
                         int64_t block1, float* out, float* work) {
  auto aligned = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(work) + 63) & ~uintptr_t{63});
  head_bf16(s, qkv, bias, h, block0, block1, out, aligned);
}

}  // namespace onednn_backend
