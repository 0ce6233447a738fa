// A fused convolution of the compiled inference pass (resnet_forward.cpp) with its weight
// reordered once into oneDNN's blocked layout.
//
// at::conv2d reaches oneDNN too, but reorders the plain weight at every call: 10-40 us of a
// call's fixed cost, which the sparse pass pays on sub-batches of a few images where the
// kernel itself takes little more (docs/performance.md, "the fixed cost of each convolution
// call"). mkldnn::_convolution_pointwise runs the same oneDNN primitive on a prepacked weight
// (the op torch.compile's CPU backend uses), with a ReLU fused where one follows.
//
// Bitwise equality with at::conv2d is the rule: the packed op runs only where at::conv2d
// itself would take oneDNN with the same layout (the conditions of ATen's
// ConvParams::use_mkldnn, for a float32 or bfloat16 channels_last CPU map of two or more
// images), and at::conv2d runs everywhere else.
// tests/engine/test_compiled_forward.py holds the two paths together.
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/mkldnn_reorder_conv2d_weight.h>

#include <atomic>

#include "kernels.h"

namespace aignet {
namespace {

const c10::OperatorHandle* pointwise_op() {
  static const auto handle =
      c10::Dispatcher::singleton().findSchema({"mkldnn::_convolution_pointwise", ""});
  return handle ? &*handle : nullptr;
}

bool bf16_supported() {
  static const bool supported = [] {
    auto handle = c10::Dispatcher::singleton().findSchema({"mkldnn::_is_mkldnn_bf16_supported", ""});
    if (!handle) return false;
    torch::jit::Stack stack;
    handle->callBoxed(&stack);
    return stack.at(0).toBool();
  }();
  return supported;
}

std::atomic<bool> packing{true};

}  // namespace

void set_packed_convolutions(bool enabled) { packing = enabled; }

bool PackedConv::packable(const at::Tensor& x) const {
  // Only channels_last maps: for a contiguous map ATen may pick another oneDNN layout.
  if (!packing || !x.device().is_cpu() || x.size(0) < 2 || weight.scalar_type() != x.scalar_type() ||
      !x.is_contiguous(at::MemoryFormat::ChannelsLast) ||
      !at::globalContext().userEnabledMkldnn() || pointwise_op() == nullptr)
    return false;
  if (x.scalar_type() == at::kBFloat16) return bf16_supported();
  if (x.scalar_type() != at::kFloat) return false;
  // ATen takes its native kernel for a single-threaded, unstrided 1x1 convolution of fewer
  // than 16 images.
  const bool one_by_one = weight.size(-1) == 1 && weight.size(-2) == 1;
  return stride > 1 || dilation > 1 || x.size(0) >= 16 || !one_by_one || at::get_num_threads() > 1;
}

std::vector<c10::IValue> PackedConv::packed_args(const at::Tensor& x) const {
  // The model's weight is held by reference: an in-place change (load_state_dict) bumps its
  // version, and the packed copy is made again. The other arguments are made once with it, so
  // a call only copies handles.
  std::lock_guard<std::mutex> lock(packed_->mutex);
  if (packed_->args.empty() || packed_->version != weight._version()) {
    at::Tensor packed = at::mkldnn_reorder_conv2d_weight(
        weight.contiguous().to_mkldnn(), {padding, padding}, {stride, stride},
        {dilation, dilation}, groups, x.sizes());
    packed_->args = {c10::IValue(), packed, bias,
                     std::vector<int64_t>{padding, padding},
                     std::vector<int64_t>{stride, stride},
                     std::vector<int64_t>{dilation, dilation}, groups, c10::IValue(),
                     c10::List<std::optional<at::Scalar>>(), c10::IValue(std::string())};
    packed_->version = weight._version();
  }
  return packed_->args;
}

at::Tensor PackedConv::operator()(const at::Tensor& x, bool relu) const {
  if (!packable(x)) {
    at::Tensor out = at::conv2d(x, weight, bias, {stride, stride}, {padding, padding},
                                {dilation, dilation}, groups);
    return relu ? out.relu_() : out;
  }
  static const c10::IValue kRelu(std::string("relu")), kNone(std::string("none"));
  torch::jit::Stack stack = packed_args(x);
  stack[0] = x;
  stack[7] = relu ? kRelu : kNone;
  pointwise_op()->callBoxed(&stack);
  return stack.at(0).toTensor();
}

}  // namespace aignet
