// The inference gate of a fused model (aignet.engine.fused_gate.FusedGate) as one call:
// execute[b] = v . relu(W mean_hw(x[b]) + bias) > threshold, with W (C, d) stored transposed and
// the BatchNorm already folded into it. In PyTorch this is a reduction and four tiny kernels per
// gate (or numpy calls for one image), ~10-20 us of dispatch against ~1 us of arithmetic at
// batch 1; a gated ResNet-110 asks 54 gates per image.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "convert.h"
#include "kernels.h"

namespace aignet {
namespace {

#ifdef __AVX2__
// NHWC channel sums, eight channels at a time over all positions, in four independent partial
// sums (a single running sum per channel would wait on the previous addition at every position).
template <typename T>
void channel_sums_nhwc8(const T* x, int64_t channels, int64_t area, float* sums) {
  for (int64_t c = 0; c < channels; c += kLanes) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const T* col = x + c;
    int64_t p = 0;
    for (; p + 4 <= area; p += 4) {
      a0 = _mm256_add_ps(a0, load8(col + p * channels));
      a1 = _mm256_add_ps(a1, load8(col + (p + 1) * channels));
      a2 = _mm256_add_ps(a2, load8(col + (p + 2) * channels));
      a3 = _mm256_add_ps(a3, load8(col + (p + 3) * channels));
    }
    for (; p < area; ++p) a0 = _mm256_add_ps(a0, load8(col + p * channels));
    _mm256_storeu_ps(sums + c, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  }
}
#endif

// Channel sums of one image: NCHW (C runs of HW values) or NHWC (HW runs of C values).
template <typename T>
void channel_sums(const T* x, int64_t channels, int64_t area, bool channels_last, float* sums) {
#ifdef __AVX2__
  if (channels_last && channels % kLanes == 0) return channel_sums_nhwc8(x, channels, area, sums);
#endif
  if (channels_last) {
    std::memset(sums, 0, sizeof(float) * channels);
    for (int64_t p = 0; p < area; ++p) {
      const T* row = x + p * channels;
#pragma omp simd
      for (int64_t c = 0; c < channels; ++c) sums[c] += load1(row[c]);
    }
  } else {
    for (int64_t c = 0; c < channels; ++c) {
      const T* run = x + c * area;
      float total = 0.f;
      // Vector lanes as independent partial sums: a strict left-to-right sum is latency-bound.
#pragma omp simd reduction(+ : total)
      for (int64_t p = 0; p < area; ++p) total += load1(run[p]);
      sums[c] = total;
    }
  }
}

template <typename T>
void decide(const T* x, int64_t batch, int64_t channels, int64_t area, bool channels_last,
            const float* weight_t, const float* bias, const float* vector, int64_t hidden,
            float threshold, float* out, GateSums* reuse) {
  // Small work stays on the calling thread: a thread hand-off costs more than one image.
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, channels * area));
  at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> local(reuse ? 0 : channels), h(hidden);
    const float scale = 1.f / static_cast<float>(area);
    for (int64_t b = begin; b < end; ++b) {
      float* sums = reuse ? reuse->sums.data() + b * channels : local.data();
      if (!reuse || !reuse->valid[b]) {
        channel_sums(x + b * channels * area, channels, area, channels_last, sums);
        if (reuse) reuse->valid[b] = 1;
      }
      for (int64_t j = 0; j < hidden; ++j) h[j] = 0.f;
      for (int64_t c = 0; c < channels; ++c) {
        const float m = sums[c] * scale;
        const float* w = weight_t + c * hidden;
        for (int64_t j = 0; j < hidden; ++j) h[j] += m * w[j];
      }
      float margin = 0.f;
      for (int64_t j = 0; j < hidden; ++j) {
        const float a = h[j] + bias[j];
        margin += (a > 0.f ? a : 0.f) * vector[j];
      }
      out[b] = margin > threshold ? 1.f : 0.f;
    }
  });
}

}  // namespace

at::Tensor gate_channel_sums(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.device().is_cpu() &&
                  (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) &&
                  (x.is_contiguous() || is_channels_last(x)),
              "gate_channel_sums: expected a contiguous or channels_last float32/bf16 CPU map");
  const int64_t batch = x.size(0), channels = x.size(1), area = x.size(2) * x.size(3);
  at::Tensor sums = at::empty({batch, channels}, x.options().dtype(at::kFloat));
  for (int64_t b = 0; b < batch; ++b) {
    float* out = ptr<float>(sums) + b * channels;
    if (x.scalar_type() == at::kFloat) {
      channel_sums(ptr<float>(x) + b * channels * area, channels, area, is_channels_last(x), out);
    } else {
      channel_sums(ptr<uint16_t>(x) + b * channels * area, channels, area, is_channels_last(x),
                   out);
    }
  }
  return sums;
}

float* GateSums::prepare(int64_t batch, int64_t num_channels) {
  if (channels != num_channels || static_cast<int64_t>(valid.size()) != batch) {
    channels = num_channels;
    sums.assign(batch * num_channels, 0.f);
    valid.assign(batch, 0);
  }
  return sums.data();
}

void GateSums::invalidate() { std::fill(valid.begin(), valid.end(), 0); }

void GateSums::invalidate_rows(const int64_t* index, int64_t count) {
  // Nothing to forget before the first gate (or where a gate did not keep its sums).
  const int64_t rows = static_cast<int64_t>(valid.size());
  for (int64_t i = 0; i < count; ++i)
    if (index[i] < rows) valid[index[i]] = 0;
}

void GateSums::validate_rows(const int64_t* index, int64_t count) {
  if (!index) return std::fill(valid.begin(), valid.end(), 1);
  for (int64_t i = 0; i < count; ++i) valid[index[i]] = 1;
}

at::Tensor gate_decide(const at::Tensor& x, const at::Tensor& weight_t, const at::Tensor& bias,
                       const at::Tensor& vector, double threshold) {
  return gate_decide_reusing(x, weight_t, bias, vector, threshold, nullptr);
}

at::Tensor gate_decide_reusing(const at::Tensor& input, const at::Tensor& weight_t,
                               const at::Tensor& bias, const at::Tensor& vector, double threshold,
                               GateSums* reuse) {
  TORCH_CHECK(input.dim() == 4 && input.device().is_cpu(), "x: expected a (B, C, H, W) CPU tensor");
  // Maps in neither layout (slices, transposes) are copied to NCHW first.
  const bool channels_last = is_channels_last(input);
  const at::Tensor x = channels_last ? input : input.contiguous();
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
              "x: expected float32 or bfloat16");
  const int64_t batch = x.size(0), channels = x.size(1), area = x.size(2) * x.size(3);
  const int64_t hidden = weight_t.size(1);
  TORCH_CHECK(weight_t.is_contiguous() && weight_t.scalar_type() == at::kFloat &&
                  weight_t.size(0) == channels && bias.numel() == hidden &&
                  vector.numel() == hidden && bias.is_contiguous() && vector.is_contiguous(),
              "gate weights: expected contiguous float32 (C, d), (d,) and (d,)");
  if (reuse) reuse->prepare(batch, channels);
  at::Tensor out = at::empty({batch}, x.options().dtype(at::kFloat));
  const float* w = weight_t.data_ptr<float>();
  const float* bp = bias.data_ptr<float>();
  const float* vp = vector.data_ptr<float>();
  const float thr = static_cast<float>(threshold);
  if (x.scalar_type() == at::kFloat) {
    decide(ptr<float>(x), batch, channels, area, channels_last, w, bp, vp, hidden, thr,
           ptr<float>(out), reuse);
  } else {
    decide(ptr<uint16_t>(x), batch, channels, area, channels_last, w, bp, vp, hidden, thr,
           ptr<float>(out), reuse);
  }
  return out;
}

}  // namespace aignet
