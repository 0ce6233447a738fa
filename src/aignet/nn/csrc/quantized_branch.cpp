// An int8 residual branch of the compiled inference pass (resnet_forward.cpp), as
// aignet.engine.quantize leaves it after PyTorch's eager post-training quantization:
// quantize -> int8 convolution -> ReLU -> ... -> int8 convolution -> dequantize.
//
// It calls the quantized operators the Python modules call (torch.ao.nn.quantized's Quantize,
// Conv2d and DeQuantize, and the in-place ReLU of the block's forward), on weights packed by the
// same quantized::conv2d_prepack from the same int8 weights, so it gives the Python path's
// result bitwise. What it removes is the Python around them, which took more than half of an
// int8 AIG-32's time at batch 1 (docs/performance.md, the precision table).
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <ATen/ops/quantize_per_tensor.h>
#include <ATen/ops/relu.h>

#include "kernels.h"

namespace aignet {
namespace {

c10::OperatorHandle op(const char* name, const char* overload) {
  // Registered when the quantized CPU kernels are in this PyTorch build (CPU builds have them).
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, overload);
}

}  // namespace

QuantizedConv::QuantizedConv(const at::Tensor& qweight, const at::Tensor& bias, int64_t stride,
                             int64_t padding, int64_t dilation, int64_t groups,
                             double output_scale, int64_t output_zero_point)
    : scale(output_scale), zero_point(output_zero_point) {
  static const c10::OperatorHandle prepack = op("quantized::conv2d_prepack", "");
  torch::jit::Stack stack{qweight,
                          bias.defined() ? c10::IValue(bias) : c10::IValue(),
                          std::vector<int64_t>{stride, stride},
                          std::vector<int64_t>{padding, padding},
                          std::vector<int64_t>{dilation, dilation},
                          groups};
  prepack.callBoxed(&stack);
  packed = stack.at(0);
}

at::Tensor QuantizedConv::operator()(const at::Tensor& qx) const {
  static const c10::OperatorHandle conv = op("quantized::conv2d", "new");
  torch::jit::Stack stack{qx, packed, scale, zero_point};
  conv.callBoxed(&stack);
  return stack.at(0).toTensor();
}

at::Tensor QuantizedBranch::operator()(const at::Tensor& x) const {
  // The input's scale and zero point are read at every call: they are the Quantize module's
  // buffers, which load_state_dict changes in place.
  const double scale = static_cast<double>(*input_scale.data_ptr<float>());
  const int64_t zero_point = *input_zero_point.data_ptr<int64_t>();
  at::Tensor out = at::quantize_per_tensor(x, scale, zero_point, at::kQUInt8);
  for (size_t j = 0; j < convs.size(); ++j) {
    out = convs[j](out);
    if (j + 1 < convs.size()) out = at::relu_(out);
  }
  return out.dequantize();
}

}  // namespace aignet
