// weight_quantize.hpp: the weights' side of int8 (symmetric s8, one scale per output channel),
// done once per linear when its first plan is built. As scalar loops (a float max chain,
// nearbyint, a division per weight) ViT-B/16's 86 million weights took about 0.25 s of a
// 0.41 s `classify` of one photo; these are vectorised and give the same bytes.
#pragma once

#include <cstdint>

namespace onednn_backend {

// The largest |w[i]| of n weights (0 for none); a NaN is passed over, as a chain of
// std::max(m, |w|) passes over it.
float span_abs_max(const float* w, int64_t n);

// q[i] = max(-127, min(127, nearbyint(w[i] / s))) in the default rounding mode (ties to
// even; a NaN becomes 127), bit for bit; returns the sum of the q[i].
int32_t span_quantize_weights(const float* w, int64_t n, float s, int8_t* q);

}  // namespace onednn_backend
