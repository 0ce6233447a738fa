// Fused kernels for the gated merge out = relu(shortcut + g * residual) of a ConvNet-AIG block.
//
// Autograd composes this merge from separate full-size passes: forward addcmul and ReLU, backward
// the ReLU mask, the product g * grad and the dot product of grad with the residual (the gate's
// gradient). Here each direction is one pass over the rows of the maps, in float32 or bfloat16
// (float32 arithmetic, bf16 rounding to nearest even, as ATen does).
//
// The forward pass also returns each channel's spatial mean of the output: the next block's gate
// pools exactly that map, so its pooling (a pass forward, two backward) folds into this one.
//
// Maps arrive as (B, N) rows in memory order (contiguous); g is a float32 (B,) vector.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "convert.h"
#include "kernels.h"

namespace aignet {
namespace {


// A row is a sequence of segments. Channels-last rows (H*W segments of C channels) pair every
// element of a segment with its own channel (kPerElement); NCHW rows (C segments of H*W
// positions) pair the whole segment with one channel. `mean` and `bias` are indexed the same way.

// out = relu(s + g * r) on one segment of n elements; adds each output to its channel's sum.
template <bool kPerElement, typename T>
void forward_segment(const T* s, const T* r, float g, T* out, int64_t n, float* sum) {
  int64_t i = 0;
  float total = 0.f;
#ifdef __AVX2__
  const __m256 vg = _mm256_set1_ps(g), zero = _mm256_setzero_ps();
  __m256 acc = zero;
  for (; i + kLanes <= n; i += kLanes) {
    // max(0, v) returns v when v is NaN, as torch.relu propagates it.
    const __m256 v = _mm256_max_ps(zero, _mm256_fmadd_ps(vg, load8(r + i), load8(s + i)));
    store8(out + i, v);
    if (sum == nullptr) continue;
    if (kPerElement) {
      _mm256_storeu_ps(sum + i, _mm256_add_ps(_mm256_loadu_ps(sum + i), v));
    } else {
      acc = _mm256_add_ps(acc, v);
    }
  }
  total = sum8(acc);
#endif
  for (; i < n; ++i) {
    const float z = load1(s[i]) + g * load1(r[i]);
    const float v = z > 0.f || z != z ? z : 0.f;
    store1(out + i, v);
    if (sum != nullptr && kPerElement) sum[i] += v;
    total += v;
  }
  if (sum != nullptr && !kPerElement) *sum += total;
}

// The merge's gradients on one segment. The output's gradient is grad plus `bias` (the gate's
// pooling gradient of the next block, per channel); the ReLU passes it where out > 0 (ATen's
// threshold_backward); grad_r = g * that; returns its dot product with r.
template <bool kPerElement, typename T>
float backward_segment(const T* grad, const T* out, const T* r, float g, const float* bias,
                       T* grad_in, T* grad_r, int64_t n) {
  float dot = 0.f;
  int64_t i = 0;
#ifdef __AVX2__
  const __m256 vg = _mm256_set1_ps(g), zero = _mm256_setzero_ps();
  const __m256 scalar_bias = bias != nullptr && !kPerElement ? _mm256_set1_ps(*bias) : zero;
  __m256 acc = zero;
  for (; i + kLanes <= n; i += kLanes) {
    __m256 d = load8(grad + i);
    if (bias != nullptr) d = _mm256_add_ps(d, kPerElement ? _mm256_loadu_ps(bias + i) : scalar_bias);
    d = _mm256_and_ps(_mm256_cmp_ps(load8(out + i), zero, _CMP_GT_OQ), d);
    store8(grad_in + i, d);
    store8(grad_r + i, _mm256_mul_ps(vg, d));
    acc = _mm256_fmadd_ps(d, load8(r + i), acc);
  }
  dot = sum8(acc);
#endif
  for (; i < n; ++i) {
    const float b = bias == nullptr ? 0.f : bias[kPerElement ? i : 0];
    const float d = load1(out[i]) > 0.f ? load1(grad[i]) + b : 0.f;
    store1(grad_in + i, d);
    store1(grad_r + i, g * d);
    dot += d * load1(r[i]);
  }
  return dot;
}

#ifdef __AVX2__
// A whole channels-last row of P positions with C = 8 * kVecs channels, the per-channel sums
// (forward) and the gate's dot product (backward) held in registers: the segment functions above
// keep them in memory and reduce every 8 lanes at each position, which makes the narrow CIFAR
// maps (16-64 channels) compute-bound. The sums run over the positions in the same order, so
// the mean is bitwise the segment path's.
template <int kVecs, typename T>
void forward_row_cl(const T* s, const T* r, float g, T* out, int64_t positions, float* mean) {
  const __m256 vg = _mm256_set1_ps(g), zero = _mm256_setzero_ps();
  __m256 acc[kVecs];
  for (int v = 0; v < kVecs; ++v) acc[v] = zero;
  for (int64_t p = 0; p < positions; ++p) {
    const int64_t o = p * kVecs * kLanes;
    for (int v = 0; v < kVecs; ++v) {
      const int64_t i = o + v * kLanes;
      const __m256 x = _mm256_max_ps(zero, _mm256_fmadd_ps(vg, load8(r + i), load8(s + i)));
      store8(out + i, x);
      acc[v] = _mm256_add_ps(acc[v], x);
    }
  }
  const __m256 count = _mm256_set1_ps(static_cast<float>(positions));
  for (int v = 0; v < kVecs; ++v) {
    _mm256_storeu_ps(mean + v * kLanes, _mm256_div_ps(acc[v], count));
  }
}

template <int kVecs, typename T>
float backward_row_cl(const T* grad, const T* out, const T* r, float g, const float* bias,
                      T* grad_in, T* grad_r, int64_t positions) {
  const __m256 vg = _mm256_set1_ps(g), zero = _mm256_setzero_ps();
  __m256 b[kVecs], acc[kVecs];
  for (int v = 0; v < kVecs; ++v) {
    b[v] = bias == nullptr ? zero : _mm256_loadu_ps(bias + v * kLanes);
    acc[v] = zero;
  }
  for (int64_t p = 0; p < positions; ++p) {
    const int64_t o = p * kVecs * kLanes;
    for (int v = 0; v < kVecs; ++v) {
      const int64_t i = o + v * kLanes;
      __m256 d = _mm256_add_ps(load8(grad + i), b[v]);
      d = _mm256_and_ps(_mm256_cmp_ps(load8(out + i), zero, _CMP_GT_OQ), d);
      store8(grad_in + i, d);
      store8(grad_r + i, _mm256_mul_ps(vg, d));
      acc[v] = _mm256_fmadd_ps(d, load8(r + i), acc[v]);
    }
  }
  for (int v = 1; v < kVecs; ++v) acc[0] = _mm256_add_ps(acc[0], acc[v]);
  return sum8(acc[0]);
}
#endif

// The register row kernels' width for C channels (channels-last rows), 0 where none applies.
int row_vecs(int64_t channels, bool channels_last) {
#ifdef __AVX2__
  if (channels_last && (channels == 16 || channels == 32 || channels == 64)) return channels / 8;
#endif
  return 0;
}

// forward_row_cl for a row_vecs() width; false (nothing done) for 0.
template <typename T>
bool forward_row(int vecs, const T* s, const T* r, float g, T* out, int64_t positions,
                 float* mean) {
#ifdef __AVX2__
  switch (vecs) {
    case 2: forward_row_cl<2>(s, r, g, out, positions, mean); return true;
    case 4: forward_row_cl<4>(s, r, g, out, positions, mean); return true;
    case 8: forward_row_cl<8>(s, r, g, out, positions, mean); return true;
  }
#endif
  return false;
}

// backward_row_cl for a row_vecs() width, its dot product in *dot; false for 0.
template <typename T>
bool backward_row(int vecs, const T* grad, const T* out, const T* r, float g, const float* bias,
                  T* grad_in, T* grad_r, int64_t positions, float* dot) {
#ifdef __AVX2__
  switch (vecs) {
    case 2:
      *dot = backward_row_cl<2>(grad, out, r, g, bias, grad_in, grad_r, positions);
      return true;
    case 4:
      *dot = backward_row_cl<4>(grad, out, r, g, bias, grad_in, grad_r, positions);
      return true;
    case 8:
      *dot = backward_row_cl<8>(grad, out, r, g, bias, grad_in, grad_r, positions);
      return true;
  }
#endif
  return false;
}

struct Rows {
  int64_t rows, n, channels;
  bool channels_last;
  int64_t segments() const { return channels_last ? n / channels : channels; }
  int64_t segment_length() const { return channels_last ? channels : n / channels; }
};

// Forward over all rows; `mean` (B, C) receives the spatial mean of every output channel.
template <typename T>
void forward_rows(const T* s, const T* r, const float* g, T* out, float* mean, const Rows& d) {
  const int64_t segs = d.segments(), len = d.segment_length(), spatial = d.n / d.channels;
  const int vecs = mean == nullptr ? 0 : row_vecs(d.channels, d.channels_last);
  at::parallel_for(0, d.rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      float* m = mean == nullptr ? nullptr : mean + b * d.channels;
      const int64_t row = b * d.n;
      if (forward_row(vecs, s + row, r + row, g[b], out + row, segs, m)) continue;
      if (m != nullptr) std::fill(m, m + d.channels, 0.f);
      for (int64_t k = 0; k < segs; ++k) {
        const int64_t o = b * d.n + k * len;
        if (d.channels_last) {
          forward_segment<true>(s + o, r + o, g[b], out + o, len, m);
        } else {
          forward_segment<false>(s + o, r + o, g[b], out + o, len, m == nullptr ? m : m + k);
        }
      }
      if (m != nullptr) {
        for (int64_t c = 0; c < d.channels; ++c) m[c] /= static_cast<float>(spatial);
      }
    }
  });
}

template <typename T>
void backward_rows(const T* grad, const T* out, const T* r, const float* g,
                   const float* grad_mean, T* grad_in, T* grad_r, float* grad_g, const Rows& d) {
  const int64_t segs = d.segments(), len = d.segment_length(), spatial = d.n / d.channels;
  const int vecs = row_vecs(d.channels, d.channels_last);
  at::parallel_for(0, d.rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> bias(grad_mean == nullptr ? 0 : d.channels);
    for (int64_t b = begin; b < end; ++b) {
      // d mean / d out = 1 / (H * W) for every position of the channel.
      for (int64_t c = 0; c < static_cast<int64_t>(bias.size()); ++c) {
        bias[c] = grad_mean[b * d.channels + c] / static_cast<float>(spatial);
      }
      const float* bs = bias.empty() ? nullptr : bias.data();
      const int64_t row = b * d.n;
      float dot = 0.f;
      if (backward_row(vecs, grad + row, out + row, r + row, g[b], bs, grad_in + row,
                       grad_r + row, segs, &dot)) {
        if (grad_g != nullptr) grad_g[b] = dot;
        continue;
      }
      for (int64_t k = 0; k < segs; ++k) {
        const int64_t o = b * d.n + k * len;
        if (d.channels_last) {
          dot += backward_segment<true>(grad + o, out + o, r + o, g[b], bs, grad_in + o,
                                        grad_r + o, len);
        } else {
          dot += backward_segment<false>(grad + o, out + o, r + o, g[b],
                                         bs == nullptr ? bs : bs + k, grad_in + o, grad_r + o,
                                         len);
        }
      }
      if (grad_g != nullptr) grad_g[b] = dot;
    }
  });
}

void check_rows(const at::Tensor& t, const at::Tensor& like, const char* name) {
  TORCH_CHECK(t.dim() == 2 && t.is_contiguous() && t.sizes() == like.sizes() &&
                  t.scalar_type() == like.scalar_type() && t.device().is_cpu(),
              name, ": expected contiguous CPU rows shaped and typed as the residual");
}

Rows check_inputs(const at::Tensor& r, const at::Tensor& g, int64_t channels, bool channels_last) {
  TORCH_CHECK(r.dim() == 2 && r.is_contiguous() && r.device().is_cpu(),
              "residual: expected contiguous CPU (B, N) rows");
  TORCH_CHECK(r.scalar_type() == at::kFloat || r.scalar_type() == at::kBFloat16,
              "gated merge kernels take float32 or bfloat16 maps");
  TORCH_CHECK(g.dim() == 1 && g.is_contiguous() && g.scalar_type() == at::kFloat &&
                  g.size(0) == r.size(0),
              "g: expected a contiguous float32 (B,) vector");
  TORCH_CHECK(channels > 0 && r.size(1) % channels == 0, "channels must divide the row length");
  return Rows{r.size(0), r.size(1), channels, channels_last};
}

}  // namespace

// Returns (out, mean): the merged rows and the (B, C) float32 spatial mean of each channel.
std::vector<at::Tensor> merge_forward(const at::Tensor& shortcut, const at::Tensor& residual,
                                      const at::Tensor& g, int64_t channels, bool channels_last) {
  const Rows d = check_inputs(residual, g, channels, channels_last);
  check_rows(shortcut, residual, "shortcut");
  at::Tensor out = at::empty_like(residual);
  at::Tensor mean = at::empty({d.rows, channels}, g.options());
  if (residual.scalar_type() == at::kFloat) {
    forward_rows(ptr<float>(shortcut), ptr<float>(residual), ptr<float>(g), ptr<float>(out),
                 ptr<float>(mean), d);
  } else {
    forward_rows(ptr<uint16_t>(shortcut), ptr<uint16_t>(residual), ptr<float>(g),
                 ptr<uint16_t>(out), ptr<float>(mean), d);
  }
  return {out, mean};
}

// Returns (grad_shortcut, grad_residual, grad_g); grad_mean is the gradient of forward's mean
// (an undefined tensor when it has none).
std::vector<at::Tensor> merge_backward(const at::Tensor& grad, const at::Tensor& out,
                                       const at::Tensor& residual, const at::Tensor& g,
                                       const c10::optional<at::Tensor>& grad_mean,
                                       int64_t channels, bool channels_last) {
  const Rows d = check_inputs(residual, g, channels, channels_last);
  check_rows(grad, residual, "grad");
  check_rows(out, residual, "out");
  const float* gm = nullptr;
  if (grad_mean.has_value() && grad_mean->defined()) {
    TORCH_CHECK(grad_mean->is_contiguous() && grad_mean->scalar_type() == at::kFloat &&
                    grad_mean->numel() == d.rows * channels,
                "grad_mean: expected a contiguous float32 (B, C) tensor");
    gm = ptr<float>(*grad_mean);
  }
  at::Tensor grad_in = at::empty_like(residual);
  at::Tensor grad_r = at::empty_like(residual);
  at::Tensor grad_g = at::empty_like(g);
  if (residual.scalar_type() == at::kFloat) {
    backward_rows(ptr<float>(grad), ptr<float>(out), ptr<float>(residual), ptr<float>(g), gm,
                  ptr<float>(grad_in), ptr<float>(grad_r), ptr<float>(grad_g), d);
  } else {
    using U = uint16_t;
    backward_rows(ptr<U>(grad), ptr<U>(out), ptr<U>(residual), ptr<float>(g), gm,
                  ptr<U>(grad_in), ptr<U>(grad_r), ptr<float>(grad_g), d);
  }
  return {grad_in, grad_r, grad_g};
}

}  // namespace aignet
