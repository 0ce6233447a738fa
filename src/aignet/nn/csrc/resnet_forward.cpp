// The inference forward pass of a fused aignet ResNet (aignet.engine.compiled_forward) in one
// call: stem, every residual block with real skipping, head.
//
// It computes exactly what the Python path computes (ResNet.forward, ResidualBlock and
// aignet.nn.executor.sparse_block_forward for a fused model under inference mode): ATen's ops,
// aignet's gate and row kernels, and convolutions that run at::conv2d's oneDNN primitive on
// weights packed once (packed_conv.cpp) or int8 branches of PyTorch's quantized operators
// (quantized_branch.cpp), so logits and decisions are bitwise the same. What it
// removes is the Python between them (module calls, the gate's dispatch and the per-block
// branching, about 40 us a block at batch 1, as much as a small block's convolutions) and the
// reorder of every convolution's weight at every call.
#include <ATen/ops/adaptive_avg_pool2d.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/max_pool2d.h>
#include <ATen/ops/pad.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "convert.h"
#include "kernels.h"

namespace aignet {
namespace {

std::atomic<bool> fusing{true};

// t[index] along the batch dimension: row copies for contiguous and channels_last maps (as
// aignet.nn.executor.select_rows).
at::Tensor select_rows(const at::Tensor& t, const at::Tensor& index) {
  if (t.is_contiguous() || t.is_contiguous(at::MemoryFormat::ChannelsLast)) return gather_rows(t, index);
  return t.index_select(0, index);
}

// out[index] = rows, in place.
at::Tensor write_rows(at::Tensor out, const at::Tensor& index, const at::Tensor& rows) {
  if (is_channels_last(out)) {
    out.permute({0, 2, 3, 1}).index_copy_(0, index, rows.permute({0, 2, 3, 1}));
    return out;
  }
  return out.index_copy_(0, index, rows);
}

// Consumes the next `count` integers of the plan's description.
class Reader {
 public:
  explicit Reader(const std::vector<int64_t>& spec) : spec_(spec) {}
  int64_t next() {
    TORCH_CHECK(pos_ < spec_.size(), "ResNetForward: the plan description ended early");
    return spec_[pos_++];
  }
  bool done() const { return pos_ == spec_.size(); }

 private:
  const std::vector<int64_t>& spec_;
  size_t pos_ = 0;
};

}  // namespace

ResNetForward::ResNetForward(std::vector<at::Tensor> tensors, std::vector<int64_t> spec)
    : tensors_(std::move(tensors)) {
  for (const at::Tensor& t : tensors_) dtypes_.push_back(t.scalar_type());
  Reader ints(spec);
  auto take_cast = [&]() -> c10::optional<at::ScalarType> {
    const int64_t code = ints.next();
    if (code == 0) return c10::nullopt;
    TORCH_CHECK(code == 1 || code == 2, "ResNetForward: unknown cast code ", code);
    return code == 1 ? at::kFloat : at::kBFloat16;
  };
  size_t tensor = 0;
  auto take = [&]() -> const at::Tensor& {
    TORCH_CHECK(tensor < tensors_.size(), "ResNetForward: the plan has too few tensors");
    return tensors_[tensor++];
  };
  auto take_conv = [&]() {
    Conv c;
    c.weight = take();
    c.bias = take();
    c.stride = ints.next();
    c.padding = ints.next();
    c.dilation = ints.next();
    c.groups = ints.next();
    return c;
  };
  stem_ = take_conv();
  pool_kernel_ = ints.next();
  pool_stride_ = ints.next();
  pool_padding_ = ints.next();
  const int64_t num_blocks = ints.next();
  for (int64_t i = 0; i < num_blocks; ++i) {
    Block b;
    b.cast = take_cast();
    const int64_t kind = ints.next();  // 0: float convolutions, 1: an int8 branch
    TORCH_CHECK(kind == 0 || kind == 1, "ResNetForward: unknown branch kind ", kind);
    const int64_t convs = ints.next();
    if (kind == 0) {
      for (int64_t j = 0; j < convs; ++j) b.branch.push_back(take_conv());
    } else {
      auto q = std::make_shared<QuantizedBranch>();
      q->input_scale = take();
      q->input_zero_point = take();
      TORCH_CHECK(q->input_scale.scalar_type() == at::kFloat && q->input_scale.numel() == 1 &&
                      q->input_zero_point.scalar_type() == at::kLong &&
                      q->input_zero_point.numel() == 1,
                  "ResNetForward: an int8 branch's input scale and zero point must be a float32 "
                  "and an int64 scalar");
      for (int64_t j = 0; j < convs; ++j) {
        const at::Tensor& qweight = take();
        const at::Tensor& bias = take();
        const double scale = take().item<double>();
        const int64_t stride = ints.next(), padding = ints.next(), dilation = ints.next();
        const int64_t groups = ints.next(), zero_point = ints.next();
        q->convs.emplace_back(qweight, bias, stride, padding, dilation, groups, scale, zero_point);
      }
      b.int8 = std::move(q);
    }
    b.shortcut = static_cast<Shortcut>(ints.next());
    if (b.shortcut == Shortcut::kZeroPad) {
      b.pad_stride = ints.next();
      b.pad_channels = ints.next();
    } else if (b.shortcut == Shortcut::kProjection) {
      b.projection = take_conv();
    }
    b.gated = ints.next() != 0;
    if (b.gated) {
      b.gate_weight_t = take();
      b.gate_bias = take();
      b.gate_vector = take();
    }
    blocks_.push_back(std::move(b));
  }
  head_cast_ = take_cast();
  fc_weight_ = take();
  fc_bias_ = take();
  TORCH_CHECK(ints.done() && tensor == tensors_.size(),
              "ResNetForward: the plan description and its tensors do not match");
}

at::Tensor ResNetForward::residual(const Block& b, const at::Tensor& x) {
  if (b.int8) return (*b.int8)(x);
  // A ReLU between consecutive convolutions, fused into the first.
  at::Tensor out = x;
  for (size_t j = 0; j < b.branch.size(); ++j) out = b.branch[j](out, j + 1 < b.branch.size());
  return out;
}

at::Tensor ResNetForward::shortcut(const Block& b, const at::Tensor& x) {
  switch (b.shortcut) {
    case Shortcut::kZeroPad: {
      constexpr int64_t end = std::numeric_limits<int64_t>::max();
      at::Tensor sub = x.slice(2, 0, end, b.pad_stride).slice(3, 0, end, b.pad_stride);
      return at::pad(sub, {0, 0, 0, 0, 0, b.pad_channels});
    }
    case Shortcut::kProjection:
      return b.projection(x);
    default:
      return x;
  }
}

at::Tensor ResNetForward::dense(const Block& b, const at::Tensor& x, bool feed, GateSums& sums) {
  // relu(branch + shortcut) in one pass over the branch's output (ATen: an add, then a ReLU).
  at::Tensor out = residual(b, x);
  const at::Tensor base = shortcut(b, x);
  if (!fusing || !mergeable_rows(out, base, out)) return out.add_(base).relu_();
  float* fed = feed && sums_mergeable(out) ? sums.prepare(out.size(0), out.size(1)) : nullptr;
  merge_relu_rows_(out, nullptr, 0, base, out, fed);
  if (fed) sums.validate_rows(nullptr, 0);
  return out;
}

at::Tensor ResNetForward::skipped(const Block& b, const at::Tensor& x) {
  // A ReLU output stays itself through an identity or zero-padding shortcut; a projection's
  // output needs the activation.
  at::Tensor out = shortcut(b, x);
  return b.shortcut == Shortcut::kProjection ? out.relu_() : out;
}

at::Tensor ResNetForward::block(const Block& b, const at::Tensor& input, double threshold,
                                float* gates, int64_t stride, bool feed, GateSums& sums) {
  // Where the precision changes between blocks (aignet.engine.quantize.to_bfloat16), the
  // block casts its input, as the Python path's forward pre-hook does.
  if (b.cast) sums.invalidate();
  const at::Tensor x = b.cast ? input.to(*b.cast) : input;
  const int64_t batch = x.size(0);
  // Every outcome but a closed gate on an identity shortcut writes a new map for every image.
  if (!b.gated || std::isnan(threshold)) {  // NaN: the gate is not asked ("all" mode)
    for (int64_t i = 0; i < batch; ++i) gates[i * stride] = 1.f;
    sums.invalidate();
    return dense(b, x, feed, sums);
  }
  at::Tensor g = gate_decide_reusing(x, b.gate_weight_t, b.gate_bias, b.gate_vector, threshold,
                                     fusing ? &sums : nullptr);
  const float* open = g.data_ptr<float>();
  for (int64_t i = 0; i < batch; ++i) gates[i * stride] = open[i];
  int64_t num_open = 0;
  for (int64_t i = 0; i < batch; ++i) num_open += open[i] != 0.f;
  if (num_open == 0) {
    if (b.shortcut != Shortcut::kIdentity) sums.invalidate();
    return skipped(b, x);
  }
  if (num_open == batch || b.shortcut != Shortcut::kIdentity) sums.invalidate();
  if (num_open == batch) return dense(b, x, feed, sums);
  at::Tensor index = at::empty({num_open}, x.options().dtype(at::kLong));
  int64_t* idx = index.data_ptr<int64_t>();
  for (int64_t i = 0, k = 0; i < batch; ++i)
    if (open[i] != 0.f) idx[k++] = i;
  // An identity shortcut's block writes its open rows into x in place; the others keep theirs.
  sums.invalidate_rows(idx, num_open);
  at::Tensor rows = select_rows(x, index);
  at::Tensor branch = residual(b, rows);
  const at::Tensor base = b.shortcut == Shortcut::kIdentity ? x : shortcut(b, x);
  at::Tensor out = b.shortcut == Shortcut::kProjection ? base.relu() : base;
  if (mergeable_rows(out, base, branch)) {
    const bool fed = feed && b.shortcut == Shortcut::kIdentity && sums_mergeable(out);
    merge_relu_rows_(out, idx, num_open, base, branch,
                     fed ? sums.prepare(batch, out.size(1)) : nullptr);
    if (fed) sums.validate_rows(idx, num_open);
    return out;
  }
  at::Tensor merged = b.shortcut == Shortcut::kIdentity ? rows : select_rows(base, index);
  return write_rows(out, index, merged.add_(branch).relu_());
}

void set_merge_fusion(bool enabled) { fusing = enabled; }

bool ResNetForward::runnable(const at::Tensor& x) const {
  // The model's tensors are held by reference: a conversion of the model (.to(), .double())
  // shows here, and the caller falls back to the Python path.
  if (x.dim() != 4 || !x.device().is_cpu() || x.scalar_type() != dtypes_[0]) return false;
  for (size_t i = 0; i < tensors_.size(); ++i)
    if (!tensors_[i].device().is_cpu() || tensors_[i].scalar_type() != dtypes_[i]) return false;
  return true;
}

std::vector<at::Tensor> ResNetForward::forward(const at::Tensor& input,
                                               const std::vector<double>& thresholds) {
  if (!runnable(input)) return {};
  TORCH_CHECK(thresholds.size() == blocks_.size(), "ResNetForward: expected ", blocks_.size(),
              " thresholds, got ", thresholds.size());
  at::Tensor x = stem_(input, true);
  if (pool_kernel_ > 0)
    x = at::max_pool2d(x, {pool_kernel_, pool_kernel_}, {pool_stride_, pool_stride_},
                       {pool_padding_, pool_padding_});
  // (B, L): column l is block l's factor (its decisions, or 1 for a block that always runs).
  const int64_t num_blocks = static_cast<int64_t>(blocks_.size());
  at::Tensor gates = at::empty({x.size(0), num_blocks}, x.options().dtype(at::kFloat));
  float* column = gates.data_ptr<float>();
  GateSums sums;  // per call: the plan may run in several threads at once
  for (int64_t l = 0; l < num_blocks; ++l) {
    const Block* next = l + 1 < num_blocks ? &blocks_[l + 1] : nullptr;
    const bool feed =
        fusing && next && next->gated && !next->cast && !std::isnan(thresholds[l + 1]);
    x = block(blocks_[l], x, thresholds[l], column + l, num_blocks, feed, sums);
  }
  at::Tensor pooled = at::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
  if (head_cast_) pooled = pooled.to(*head_cast_);
  at::Tensor logits = at::linear(pooled, fc_weight_, fc_bias_);
  return {logits, gates};
}

}  // namespace aignet
