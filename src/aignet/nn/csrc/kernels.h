// Declarations of aignet's CPU kernels; bindings.cpp exposes them to Python. The kernels include
// only the ATen headers they use (the whole of torch/extension.h takes ~40 s per file to parse).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <memory>
#include <mutex>
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
// The channel sums of each image's map, kept from one gate to the next within a forward pass: a
// block that leaves an image's map as it was (a closed gate on an identity shortcut) leaves its
// sums valid, so the next gate need not read that image again. Channel count and batch size
// are those of the last gate; a change of either makes every row invalid.
struct GateSums {
  std::vector<float> sums;  // (batch, channels)
  std::vector<uint8_t> valid;  // per image: sums holds the sums of its current map
  int64_t channels = 0;
  // The (batch, channels) sums, every row made invalid where the shape changed.
  float* prepare(int64_t batch, int64_t channels);
  void invalidate();
  void invalidate_rows(const int64_t* index, int64_t count);
  void validate_rows(const int64_t* index, int64_t count);  // index null: every row
};
// Each image's channel sums as gate_decide pools them, (B, C) float32 (for the tests).
at::Tensor gate_channel_sums(const at::Tensor& x);
// gate_decide that takes an image's sums from `reuse` where they are valid and stores the
// others there; the same decisions, bitwise, as long as the caller invalidates every image whose
// map changed. nullptr: gate_decide.
at::Tensor gate_decide_reusing(const at::Tensor& x, const at::Tensor& weight_t,
                               const at::Tensor& bias, const at::Tensor& vector, double threshold,
                               GateSums* reuse);

// sparse_rows.cpp
// t[index] along the batch dimension, in t's layout (contiguous or channels_last).
at::Tensor gather_rows(const at::Tensor& t, const at::Tensor& index);
// Whether scatter_merge_ takes these maps: float32 or bf16 on the CPU, contiguous or
// channels_last, out and shortcut alike and branch's rows laid out as theirs.
bool mergeable_rows(const at::Tensor& out, const at::Tensor& shortcut, const at::Tensor& branch);
// out[index[i]] = act(shortcut[index[i]] + branch[i]), act = ReLU when `relu`; in place. out and
// shortcut may be the same map.
at::Tensor scatter_merge_(at::Tensor out, const at::Tensor& index, const at::Tensor& shortcut,
                          const at::Tensor& branch, bool relu);
// Whether merge_relu_rows_ can give channel sums for this map: channels_last, channels a
// multiple of 8 (the gate's vector pooling), AVX2.
bool sums_mergeable(const at::Tensor& out);
// out[r] = relu(shortcut[r] + branch[i]) for r = index[i], i < count (index null: every row of
// out, branch a map of out's size), in place, as scatter_merge_; with `sums` (sums_mergeable
// maps), each written row r's channel sums to sums + r * C as gate_decide pools them, bitwise.
void merge_relu_rows_(const at::Tensor& out, const int64_t* index, int64_t count,
                      const at::Tensor& shortcut, const at::Tensor& branch, float* sums);
// merge_relu_rows_ with sums, from Python (for the tests): the (B, C) sums, NaN in rows not
// written; index None: every row.
at::Tensor merge_relu_rows_with_sums_(const at::Tensor& out, const c10::optional<at::Tensor>& index,
                                      const at::Tensor& shortcut, const at::Tensor& branch);

// packed_conv.cpp
// A fused convolution (weight, bias, square stride/padding/dilation) of the compiled pass; its
// weight is reordered once for oneDNN where at::conv2d would take oneDNN, and it gives what
// at::conv2d (then ReLU, when `relu`) gives, bitwise.
struct PackedConv {
  at::Tensor weight, bias;
  int64_t stride = 1, padding = 0, dilation = 1, groups = 1;
  at::Tensor operator()(const at::Tensor& x, bool relu = false) const;

 private:
  struct Packed {  // made on first use, again when the weight changes
    std::mutex mutex;  // the plan may run in several threads at once (it releases the GIL)
    std::vector<c10::IValue> args;  // the packed op's arguments but the input and the ReLU
    int64_t version = -1;
  };
  bool packable(const at::Tensor& x) const;
  std::vector<c10::IValue> packed_args(const at::Tensor& x) const;
  std::shared_ptr<Packed> packed_ = std::make_shared<Packed>();
};

// Whether PackedConv may pack (default on); off, it always runs at::conv2d (for A/B timing).
void set_packed_convolutions(bool enabled);

// quantized_branch.cpp
// An int8 convolution of the compiled pass: the quantized::conv2d of torch.ao.nn.quantized.Conv2d
// on a weight packed by quantized::conv2d_prepack, with the module's output scale and zero point.
struct QuantizedConv {
  QuantizedConv(const at::Tensor& qweight, const at::Tensor& bias, int64_t stride, int64_t padding,
                int64_t dilation, int64_t groups, double output_scale, int64_t output_zero_point);
  at::Tensor operator()(const at::Tensor& qx) const;
  c10::IValue packed;  // the Conv2dPackedParamsBase
  double scale;
  int64_t zero_point;
};

// An int8 residual branch (aignet.engine.quantize): quantize a float32 map with the Quantize
// module's scale and zero point (float32 and int64 scalar tensors, held by reference), the
// convolutions with a ReLU between consecutive ones, dequantize.
struct QuantizedBranch {
  at::Tensor input_scale, input_zero_point;
  std::vector<QuantizedConv> convs;
  at::Tensor operator()(const at::Tensor& x) const;
};

// resnet_forward.cpp
// Whether the compiled pass fuses its merges (default on): a dense block's add and ReLU in one
// pass, and each merge summing its output for the next gate, which then reads only the images
// whose map changed. Off, it runs ATen's add and ReLU and every gate pools its whole input (for
// A/B timing); the results are the same either way.
void set_merge_fusion(bool enabled);
// The inference forward pass of a fused ResNet, built once from its tensors and a description
// (aignet.engine.compiled_forward writes both); forward returns {logits, gates}, or nothing when
// the input or a tensor of the model is no longer on the CPU in the dtype the plan was built with.
class ResNetForward {
 public:
  ResNetForward(std::vector<at::Tensor> tensors, std::vector<int64_t> spec);
  std::vector<at::Tensor> forward(const at::Tensor& input, const std::vector<double>& thresholds);

 private:
  enum class Shortcut : int64_t { kIdentity = 0, kZeroPad = 1, kProjection = 2 };
  using Conv = PackedConv;
  struct Block {
    c10::optional<at::ScalarType> cast;  // of the block's input, where the precision changes
    std::vector<Conv> branch;  // ReLU between consecutive convolutions
    std::shared_ptr<const QuantizedBranch> int8;  // set: the branch runs this instead
    Shortcut shortcut = Shortcut::kIdentity;
    int64_t pad_stride = 1, pad_channels = 0;
    Conv projection;
    bool gated = false;
    at::Tensor gate_weight_t, gate_bias, gate_vector;
  };

  static at::Tensor residual(const Block& b, const at::Tensor& x);
  static at::Tensor shortcut(const Block& b, const at::Tensor& x);
  // Every image through the block; `feed`: also its output's gate sums for the next block.
  static at::Tensor dense(const Block& b, const at::Tensor& x, bool feed, GateSums& sums);
  static at::Tensor skipped(const Block& b, const at::Tensor& x);
  // Runs one block and writes its factor per image to gates[i * stride]; `sums` carries the
  // gates' channel sums from block to block, and `feed` (the next block asks its gate on this
  // block's output) lets the merge that writes an image's output sum it as it goes.
  static at::Tensor block(const Block& b, const at::Tensor& x, double threshold,
                          float* gates, int64_t stride, bool feed, GateSums& sums);
  bool runnable(const at::Tensor& x) const;

  std::vector<at::Tensor> tensors_;
  std::vector<at::ScalarType> dtypes_;  // of tensors_ when the plan was built
  Conv stem_;
  int64_t pool_kernel_ = 0, pool_stride_ = 1, pool_padding_ = 0;
  std::vector<Block> blocks_;
  c10::optional<at::ScalarType> head_cast_;
  at::Tensor fc_weight_, fc_bias_;
};

}  // namespace aignet
