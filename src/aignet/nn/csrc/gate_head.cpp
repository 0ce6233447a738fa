// The ConvNet-AIG gate in training as one call each way: the pooled input (B, C) through
// Linear(C, d) -> BatchNorm1d (batch statistics, running statistics updated) -> ReLU ->
// Linear(d, 2), then the factor g (B,) that multiplies the block's residual branch.
//
// The PyTorch form of this head is ~20 tiny kernels forward and as many backward, each costing
// more in dispatch and autograd bookkeeping than in arithmetic (B x d is 128 x 16). Plain loops
// throughout; the products with the C-wide weight use ATen's matmul for wide gates only.
//
// Modes (aignet.nn.gates): 0 hard (straight-through Gumbel), 1 soft (Gumbel-softmax),
// 2 threshold (no noise). With z = (s + G) / tau (G = 0 for threshold) and p = softmax(z)[1]:
//   forward g = [s1 + G1 > s0 + G0] (hard), p (soft), [s1 - s0 > margin_threshold] (threshold);
//   backward dg/ds1 = -dg/ds0 = p (1 - p) / tau in every mode.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "kernels.h"

namespace aignet {
namespace {

constexpr float kEps = 1e-10f;  // the clamp of aignet.nn.gumbel.gumbel_noise

inline float gumbel(float u) {
  u = std::min(std::max(u, kEps), 1.0f - kEps);
  return -std::log(-std::log(u));
}

// The products with the C-wide first weight w1 (d, C). For the CIFAR gates (C * d up to 4096:
// C 16-64, d 16) at::mm costs ~30 us a call in dispatch and threading, several times its
// arithmetic, and a training step makes three per gate; there these loops run instead, each
// innermost loop over independent outputs so the compiler vectorises it without reordering a sum.
constexpr int64_t kSmallProduct = 4096;

// x (B, C) w1^T: the first layer's output (B, d).
at::Tensor first_layer(const at::Tensor& x, const at::Tensor& w1) {
  const int64_t batch = x.size(0), c = x.size(1), d = w1.size(0);
  if (c * d > kSmallProduct) return at::mm(x, w1.t()).contiguous();
  std::vector<float> wt(c * d);  // w1^T: row k holds the d weights of input k
  const float* w = w1.data_ptr<float>();
  for (int64_t j = 0; j < d; ++j) {
    for (int64_t k = 0; k < c; ++k) wt[k * d + j] = w[j * c + k];
  }
  at::Tensor h = at::zeros({batch, d}, x.options());
  const float* xp = x.data_ptr<float>();
  float* hp = h.data_ptr<float>();
  for (int64_t b = 0; b < batch; ++b) {
    float* __restrict hb = hp + b * d;
    for (int64_t k = 0; k < c; ++k) {
      const float v = xp[b * c + k];
      const float* __restrict wk = wt.data() + k * d;
      for (int64_t j = 0; j < d; ++j) hb[j] += v * wk[j];
    }
  }
  return h;
}

// The first layer's backward: (grad_h w1, grad_h^T x), the gradients of x (B, C) and w1 (d, C).
std::pair<at::Tensor, at::Tensor> first_layer_backward(const at::Tensor& grad_h,
                                                       const at::Tensor& x, const at::Tensor& w1) {
  const int64_t batch = x.size(0), c = x.size(1), d = w1.size(0);
  if (c * d > kSmallProduct) return {at::mm(grad_h, w1), at::mm(grad_h.t(), x)};
  at::Tensor grad_x = at::zeros_like(x), grad_w = at::zeros_like(w1);
  const float* gh = grad_h.data_ptr<float>();
  const float* xp = x.data_ptr<float>();
  const float* w = w1.data_ptr<float>();
  float* gx = grad_x.data_ptr<float>();
  float* gw = grad_w.data_ptr<float>();
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t j = 0; j < d; ++j) {
      const float v = gh[b * d + j];
      float* __restrict gxb = gx + b * c;
      float* __restrict gwj = gw + j * c;
      const float* __restrict wj = w + j * c;
      const float* __restrict xb = xp + b * c;
      for (int64_t k = 0; k < c; ++k) {
        gxb[k] += v * wj[k];
        gwj[k] += v * xb[k];
      }
    }
  }
  return {grad_x, grad_w};
}

void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(), name,
              ": expected a contiguous float32 CPU tensor");
}

}  // namespace

// Returns (g, normalized, invstd, hidden, prob): the factors and what the backward needs.
std::vector<at::Tensor> gate_head_forward(const at::Tensor& pooled, const at::Tensor& w1,
                                          const at::Tensor& bn_weight, const at::Tensor& bn_bias,
                                          at::Tensor running_mean, at::Tensor running_var,
                                          const at::Tensor& w2, const at::Tensor& b2,
                                          const c10::optional<at::Tensor>& uniform,
                                          double momentum, double eps, double tau, int64_t mode,
                                          double margin_threshold) {
  for (const auto* t : {&pooled, &w1, &bn_weight, &bn_bias, &w2, &b2}) check_float(*t, "gate");
  check_float(running_mean, "running_mean");
  check_float(running_var, "running_var");
  const int64_t batch = pooled.size(0), d = w1.size(0);
  TORCH_CHECK(batch > 1, "Expected more than 1 value per channel when training (BatchNorm1d)");
  TORCH_CHECK(w2.size(0) == 2 && w2.size(1) == d, "w2: expected (2, d)");
  const bool noisy = mode != 2;
  if (noisy) {
    TORCH_CHECK(uniform.has_value(), "hard and soft gates need uniform noise");
    check_float(*uniform, "uniform");
    TORCH_CHECK(uniform->numel() == 2 * batch, "uniform: expected (B, 2)");
  }

  at::Tensor h = first_layer(pooled, w1);  // (B, d)
  at::Tensor normalized = at::empty_like(h), hidden = at::empty_like(h);
  at::Tensor invstd = at::empty({d}, h.options());
  at::Tensor g = at::empty({batch}, h.options()), prob = at::empty({batch}, h.options());
  const float* hp = h.data_ptr<float>();
  float* np_ = normalized.data_ptr<float>();
  float* rp = hidden.data_ptr<float>();
  const float* gamma = bn_weight.data_ptr<float>();
  const float* beta = bn_bias.data_ptr<float>();
  float* rm = running_mean.data_ptr<float>();
  float* rv = running_var.data_ptr<float>();
  float* is = invstd.data_ptr<float>();
  for (int64_t j = 0; j < d; ++j) {
    double mean = 0.0, var = 0.0;
    for (int64_t b = 0; b < batch; ++b) mean += hp[b * d + j];
    mean /= batch;
    for (int64_t b = 0; b < batch; ++b) var += (hp[b * d + j] - mean) * (hp[b * d + j] - mean);
    var /= batch;  // biased: the normalisation; the running estimate is unbiased
    is[j] = static_cast<float>(1.0 / std::sqrt(var + eps));
    rm[j] = static_cast<float>((1.0 - momentum) * rm[j] + momentum * mean);
    rv[j] = static_cast<float>((1.0 - momentum) * rv[j] + momentum * var * batch / (batch - 1));
    for (int64_t b = 0; b < batch; ++b) {
      const float n = (hp[b * d + j] - static_cast<float>(mean)) * is[j];
      np_[b * d + j] = n;
      const float a = gamma[j] * n + beta[j];
      rp[b * d + j] = a > 0.f ? a : 0.f;
    }
  }
  const float* w2p = w2.data_ptr<float>();
  const float* b2p = b2.data_ptr<float>();
  const float* up = noisy ? uniform->data_ptr<float>() : nullptr;
  float* gp = g.data_ptr<float>();
  float* pp = prob.data_ptr<float>();
  for (int64_t b = 0; b < batch; ++b) {
    float s0 = b2p[0], s1 = b2p[1];
    for (int64_t j = 0; j < d; ++j) {
      s0 += rp[b * d + j] * w2p[j];
      s1 += rp[b * d + j] * w2p[d + j];
    }
    float z0 = s0, z1 = s1;
    if (noisy) {
      z0 += gumbel(up[2 * b]);
      z1 += gumbel(up[2 * b + 1]);
    }
    const float p = 1.f / (1.f + std::exp((z0 - z1) / static_cast<float>(tau)));
    pp[b] = p;
    if (mode == 0) {
      gp[b] = z1 > z0 ? 1.f : 0.f;  // argmax picks skip (index 0) on a tie
    } else if (mode == 1) {
      gp[b] = p;
    } else {
      gp[b] = s1 - s0 > static_cast<float>(margin_threshold) ? 1.f : 0.f;
    }
  }
  return {g, normalized, invstd, hidden, prob};
}

// Returns the gradients (pooled, w1, bn_weight, bn_bias, w2, b2).
std::vector<at::Tensor> gate_head_backward(const at::Tensor& grad_g, const at::Tensor& pooled,
                                           const at::Tensor& w1, const at::Tensor& bn_weight,
                                           const at::Tensor& w2, const at::Tensor& normalized,
                                           const at::Tensor& invstd, const at::Tensor& hidden,
                                           const at::Tensor& prob, double tau) {
  check_float(grad_g, "grad_g");
  const int64_t batch = pooled.size(0), d = w1.size(0);
  const float* dg = grad_g.data_ptr<float>();
  const float* pp = prob.data_ptr<float>();
  const float* rp = hidden.data_ptr<float>();
  const float* np_ = normalized.data_ptr<float>();
  const float* w2p = w2.data_ptr<float>();
  const float* gamma = bn_weight.data_ptr<float>();
  const float* is = invstd.data_ptr<float>();
  at::Tensor grad_w2 = at::zeros_like(w2), grad_b2 = at::zeros({2}, w2.options());
  at::Tensor grad_gamma = at::zeros_like(bn_weight), grad_beta = at::zeros_like(bn_weight);
  at::Tensor grad_h = at::empty({batch, d}, w2.options());
  float* gw2 = grad_w2.data_ptr<float>();
  float* gb2 = grad_b2.data_ptr<float>();
  float* ggamma = grad_gamma.data_ptr<float>();
  float* gbeta = grad_beta.data_ptr<float>();
  float* gh = grad_h.data_ptr<float>();
  // Through the last layer and the ReLU; grad_h holds d loss / d normalized for now.
  for (int64_t b = 0; b < batch; ++b) {
    const float dm = dg[b] * pp[b] * (1.f - pp[b]) / static_cast<float>(tau);  // d s1; d s0 = -dm
    gb2[0] -= dm;
    gb2[1] += dm;
    for (int64_t j = 0; j < d; ++j) {
      const float r = rp[b * d + j];
      gw2[j] -= dm * r;
      gw2[d + j] += dm * r;
      const float da = r > 0.f ? dm * (w2p[d + j] - w2p[j]) : 0.f;
      gbeta[j] += da;
      ggamma[j] += da * np_[b * d + j];
      gh[b * d + j] = da * gamma[j];
    }
  }
  // Through the BatchNorm with batch statistics.
  for (int64_t j = 0; j < d; ++j) {
    float sum = 0.f, dot = 0.f;
    for (int64_t b = 0; b < batch; ++b) {
      sum += gh[b * d + j];
      dot += gh[b * d + j] * np_[b * d + j];
    }
    const float scale = is[j] / static_cast<float>(batch);
    for (int64_t b = 0; b < batch; ++b) {
      gh[b * d + j] = scale * (batch * gh[b * d + j] - sum - np_[b * d + j] * dot);
    }
  }
  auto [grad_pooled, grad_w1] = first_layer_backward(grad_h, pooled, w1);
  return {grad_pooled, grad_w1, grad_gamma, grad_beta, grad_w2, grad_b2};
}

}  // namespace aignet
