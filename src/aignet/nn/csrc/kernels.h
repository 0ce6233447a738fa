// Declarations of aignet's CPU kernels; bindings.cpp exposes them to Python. The kernels include
// only the ATen headers they use (the whole of torch/extension.h takes ~40 s per file to parse).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <vector>

namespace aignet {

// gated_merge.cpp
std::vector<at::Tensor> merge_forward(const at::Tensor& shortcut, const at::Tensor& residual,
                                      const at::Tensor& g, int64_t channels, bool channels_last);
std::vector<at::Tensor> merge_backward(const at::Tensor& grad, const at::Tensor& out,
                                       const at::Tensor& residual, const at::Tensor& g,
                                       const c10::optional<at::Tensor>& grad_mean,
                                       int64_t channels, bool channels_last);

// gate_head.cpp
std::vector<at::Tensor> gate_head_forward(const at::Tensor& pooled, const at::Tensor& w1,
                                          const at::Tensor& bn_weight, const at::Tensor& bn_bias,
                                          at::Tensor running_mean, at::Tensor running_var,
                                          const at::Tensor& w2, const at::Tensor& b2,
                                          const c10::optional<at::Tensor>& uniform,
                                          double momentum, double eps, double tau, int64_t mode,
                                          double margin_threshold);
std::vector<at::Tensor> gate_head_backward(const at::Tensor& grad_g, const at::Tensor& pooled,
                                           const at::Tensor& w1, const at::Tensor& bn_weight,
                                           const at::Tensor& w2, const at::Tensor& normalized,
                                           const at::Tensor& invstd, const at::Tensor& hidden,
                                           const at::Tensor& prob, double tau);

// gate_decide.cpp
at::Tensor gate_decide(const at::Tensor& x, const at::Tensor& weight_t, const at::Tensor& bias,
                       const at::Tensor& vector, double threshold);

}  // namespace aignet
