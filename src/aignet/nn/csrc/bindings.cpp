// The Python module of aignet's CPU kernels (built by aignet.nn.kernels).
#include <torch/extension.h>

#include "kernels.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("merge_forward", &aignet::merge_forward,
        "relu(shortcut + g * residual) on (B, N) rows, and each channel's spatial mean");
  m.def("merge_backward", &aignet::merge_backward,
        "gradients of the gated merge with respect to (shortcut, residual, g)");
  m.def("gate_head_forward", &aignet::gate_head_forward,
        "training gate: pooled input -> Linear -> BatchNorm -> ReLU -> Linear -> sampled g");
  m.def("gate_head_backward", &aignet::gate_head_backward,
        "gradients of the training gate with respect to its input and parameters");
  m.def("gate_decide", &aignet::gate_decide,
        "fused inference gate: 1.0 where v . relu(W mean(x) + b) > threshold, else 0.0");
  m.def("gather_rows", &aignet::gather_rows,
        "t[index] along the batch dimension of a contiguous or channels_last map (row copies)");
  m.def("mergeable_rows", &aignet::mergeable_rows,
        "whether scatter_merge_ takes (out, shortcut, branch)");
  m.def("scatter_merge_", &aignet::scatter_merge_,
        "out[index[i]] = relu(shortcut[index[i]] + branch[i]) in place (ReLU optional)");
  m.def("gate_channel_sums", &aignet::gate_channel_sums,
        "each image's channel sums as the inference gate pools them, (B, C) float32");
  m.def("sums_mergeable", &aignet::sums_mergeable,
        "whether merge_relu_rows_with_sums_ takes this map");
  m.def("merge_relu_rows_with_sums_", &aignet::merge_relu_rows_with_sums_,
        "scatter_merge_ with ReLU that also returns the written rows' gate channel sums");
  m.def("set_packed_convolutions", &aignet::set_packed_convolutions,
        "let the compiled pass run oneDNN on prepacked weights (default) or always at::conv2d");
  m.def("set_merge_fusion", &aignet::set_merge_fusion,
        "let the compiled pass fuse its merges with the next gate's pooling (default) or not");
  pybind11::class_<aignet::ResNetForward>(m, "ResNetForward",
                                          "the inference forward pass of a fused ResNet")
      .def(pybind11::init<std::vector<at::Tensor>, std::vector<int64_t>>())
      .def("forward", &aignet::ResNetForward::forward,
           "(logits, gates) of a float32 CPU batch, or [] when the plan cannot run it",
           pybind11::call_guard<pybind11::gil_scoped_release>());
}
