// Element access and layout shared by the kernels: bf16 data is handled as its raw 16-bit patterns (the
// upper half of a float32), arithmetic is float32, and stores round to nearest even as ATen does.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <cstring>

namespace aignet {

inline float load1(float v) { return v; }
inline float load1(uint16_t v) {
  uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}
inline void store1(float* p, float v) { *p = v; }
inline void store1(uint16_t* p, float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof(u));
  *p = v != v ? static_cast<uint16_t>(0x7FC0u)
              : static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// A 4-d map laid out NHWC and not also NCHW-contiguous, as 1x1 maps are (the rule of
// aignet.nn.gated_ops.is_channels_last).
inline bool is_channels_last(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// A tensor's data as T (uint16_t for bfloat16).
template <typename T>
T* ptr(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

}  // namespace aignet
