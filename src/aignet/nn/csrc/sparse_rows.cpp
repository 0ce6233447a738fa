// The row copies of sparse execution (aignet.nn.executor): gather the images whose gate is open,
// and write their block output back, fused with the merge that computes it.
//
// Each image of a contiguous or channels_last map is one run of C*H*W elements, so a batch row
// is a plain memory copy. ATen's index_select / index_copy_ along the batch dimension do that
// work through their general strided loops, and the merge relu(shortcut + branch) followed by
// the write-back is three passes over the open rows (add, ReLU, copy) where one suffices. The
// arithmetic is the same as ATen's (float32, or bf16 computed in float32 and rounded to nearest
// even), so the results are bitwise those of the reference ops.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "convert.h"
#include "kernels.h"

namespace aignet {
namespace {

// Rows of at least this many bytes in all go to one thread; fewer are not worth a second.
constexpr int64_t kBytesPerThread = 256 * 1024;

// A 4-d map whose images are runs of C*H*W elements (contiguous or channels_last).
bool row_major(const at::Tensor& t) {
  return t.dim() == 4 && (t.is_contiguous() || t.is_contiguous(at::MemoryFormat::ChannelsLast));
}

int64_t grain(const at::Tensor& t) {
  const int64_t row_bytes = std::max<int64_t>(1, t.stride(0) * t.element_size());
  return std::max<int64_t>(1, kBytesPerThread / row_bytes);
}

// out = act(s + b) on n elements; max(0, v) returns v when v is NaN, as torch.relu does.
template <typename T>
void merge_row(const T* s, const T* b, T* out, int64_t n, bool relu) {
  int64_t i = 0;
#ifdef __AVX2__
  const __m256 zero = _mm256_setzero_ps();
  for (; i + kLanes <= n; i += kLanes) {
    __m256 v = _mm256_add_ps(load8(s + i), load8(b + i));
    store8(out + i, relu ? _mm256_max_ps(zero, v) : v);
  }
#endif
  for (; i < n; ++i) {
    const float v = load1(s[i]) + load1(b[i]);
    store1(out + i, relu && v < 0.f ? 0.f : v);
  }
}

#ifdef __AVX2__
// merge_row with ReLU on one channels_last image (channels a multiple of 8) that also writes its
// channel sums as the gate's pooling (gate_decide.cpp, channel_sums_nhwc8) forms them from the
// stored values: per lane, position p goes to partial sum p % 4 (the last area % 4 positions to
// partial 0), and the sum is (a0 + a1) + (a2 + a3). The same additions in the same order, so
// the same bits; the partial sums live in `acc` (4 x channels floats).
template <typename T>
void merge_row_sums(const T* s, const T* b, T* out, int64_t channels, int64_t area, float* acc,
                    float* sums) {
  std::fill(acc, acc + 4 * channels, 0.f);
  const __m256 zero = _mm256_setzero_ps();
  const int64_t area4 = area - area % 4;
  for (int64_t p = 0; p < area; ++p) {
    float* a = acc + (p < area4 ? p % 4 : 0) * channels;
    const int64_t row = p * channels;
    for (int64_t c = 0; c < channels; c += kLanes) {
      const __m256 v = _mm256_max_ps(zero, _mm256_add_ps(load8(s + row + c), load8(b + row + c)));
      store8(out + row + c, v);
      // bf16: the sum takes the rounded value that was stored, as the gate reads it.
      const __m256 stored = std::is_same<T, float>::value ? v : load8(out + row + c);
      _mm256_storeu_ps(a + c, _mm256_add_ps(_mm256_loadu_ps(a + c), stored));
    }
  }
  for (int64_t c = 0; c < channels; c += kLanes) {
    const __m256 a01 = _mm256_add_ps(_mm256_loadu_ps(acc + c), _mm256_loadu_ps(acc + channels + c));
    const __m256 a23 = _mm256_add_ps(_mm256_loadu_ps(acc + 2 * channels + c),
                                     _mm256_loadu_ps(acc + 3 * channels + c));
    _mm256_storeu_ps(sums + c, _mm256_add_ps(a01, a23));
  }
}
#endif

// out[idx[i]] = act(shortcut[idx[i]] + branch[i]) for i < k (idx null: row i); with `sums`
// (channels_last, channels a multiple of 8, ReLU), also row idx[i]'s channel sums at
// sums + idx[i] * channels.
template <typename T>
void scatter_merge_rows(const at::Tensor& out, const int64_t* idx, int64_t k,
                        const at::Tensor& shortcut, const at::Tensor& branch, bool relu,
                        float* sums) {
  const int64_t n = out.stride(0), channels = out.size(1), area = out.size(2) * out.size(3);
  T* o = ptr<T>(out);
  const T* s = ptr<T>(shortcut);
  const T* b = ptr<T>(branch);
  at::parallel_for(0, k, grain(out), [&](int64_t begin, int64_t end) {
    std::vector<float> acc(sums ? 4 * channels : 0);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r = idx ? idx[i] : i;
#ifdef __AVX2__
      if (sums) {
        merge_row_sums(s + r * n, b + i * n, o + r * n, channels, area, acc.data(),
                       sums + r * channels);
        continue;
      }
#endif
      merge_row(s + r * n, b + i * n, o + r * n, n, relu);
    }
  });
}

template <typename... Args>
void merge_dispatch(const at::Tensor& out, Args&&... args) {
  if (out.scalar_type() == at::kFloat) {
    scatter_merge_rows<float>(out, std::forward<Args>(args)...);
  } else {
    scatter_merge_rows<uint16_t>(out, std::forward<Args>(args)...);
  }
}

}  // namespace

at::Tensor gather_rows(const at::Tensor& t, const at::Tensor& index) {
  TORCH_CHECK(row_major(t) && index.scalar_type() == at::kLong && index.is_contiguous(),
              "gather_rows: expects a contiguous or channels_last map and a contiguous int64 index");
  const auto format = is_channels_last(t) ? at::MemoryFormat::ChannelsLast
                                          : at::MemoryFormat::Contiguous;
  const int64_t k = index.numel();
  at::Tensor rows = at::empty({k, t.size(1), t.size(2), t.size(3)}, t.options(), format);
  const int64_t bytes = t.stride(0) * t.element_size(), batch = t.size(0);
  const int64_t* idx = index.data_ptr<int64_t>();
  for (int64_t i = 0; i < k; ++i)
    TORCH_CHECK(idx[i] >= 0 && idx[i] < batch, "gather_rows: index ", idx[i], " out of range");
  const char* src = static_cast<const char*>(t.data_ptr());
  char* dst = static_cast<char*>(rows.data_ptr());
  at::parallel_for(0, k, grain(t), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) std::memcpy(dst + i * bytes, src + idx[i] * bytes, bytes);
  });
  return rows;
}

bool mergeable_rows(const at::Tensor& out, const at::Tensor& shortcut, const at::Tensor& branch) {
  const auto dtype = out.scalar_type();
  return (dtype == at::kFloat || dtype == at::kBFloat16) && out.device().is_cpu() &&
         row_major(out) && row_major(shortcut) && row_major(branch) &&
         shortcut.scalar_type() == dtype && branch.scalar_type() == dtype &&
         shortcut.sizes() == out.sizes() && shortcut.strides() == out.strides() &&
         branch.sizes().slice(1) == out.sizes().slice(1) &&
         branch.strides().slice(1) == out.strides().slice(1);
}

at::Tensor scatter_merge_(at::Tensor out, const at::Tensor& index, const at::Tensor& shortcut,
                          const at::Tensor& branch, bool relu) {
  TORCH_CHECK(mergeable_rows(out, shortcut, branch) && branch.size(0) == index.numel(),
              "scatter_merge_: out, shortcut and branch must be float32 or bfloat16 CPU maps with "
              "matching shapes and layouts, and branch one row per index");
  TORCH_CHECK(index.scalar_type() == at::kLong && index.is_contiguous(),
              "scatter_merge_: expects a contiguous int64 index");
  const int64_t* idx = index.data_ptr<int64_t>();
  for (int64_t i = 0; i < index.numel(); ++i)
    TORCH_CHECK(idx[i] >= 0 && idx[i] < out.size(0), "scatter_merge_: index ", idx[i],
                " out of range");
  merge_dispatch(out, idx, index.numel(), shortcut, branch, relu, nullptr);
  return out;
}

bool sums_mergeable(const at::Tensor& out) {
#ifdef __AVX2__
  return out.dim() == 4 && is_channels_last(out) && out.size(1) % kLanes == 0;
#else
  return false;
#endif
}

void merge_relu_rows_(const at::Tensor& out, const int64_t* index, int64_t count,
                      const at::Tensor& shortcut, const at::Tensor& branch, float* sums) {
  const int64_t rows = index ? count : out.size(0);
  TORCH_CHECK(mergeable_rows(out, shortcut, branch) && branch.size(0) == rows,
              "merge_relu_rows_: maps that scatter_merge_ would not take");
  TORCH_CHECK(!sums || sums_mergeable(out), "merge_relu_rows_: sums need sums_mergeable maps");
  merge_dispatch(out, index, rows, shortcut, branch, true, sums);
}

at::Tensor merge_relu_rows_with_sums_(const at::Tensor& out, const c10::optional<at::Tensor>& index,
                                      const at::Tensor& shortcut, const at::Tensor& branch) {
  TORCH_CHECK(!index || (index->scalar_type() == at::kLong && index->is_contiguous()),
              "merge_relu_rows_with_sums_: expects a contiguous int64 index");
  const int64_t* idx = index ? index->data_ptr<int64_t>() : nullptr;
  for (int64_t i = 0; idx && i < index->numel(); ++i)
    TORCH_CHECK(idx[i] >= 0 && idx[i] < out.size(0), "index ", idx[i], " out of range");
  at::Tensor sums = at::full({out.size(0), out.size(1)}, NAN, out.options().dtype(at::kFloat));
  merge_relu_rows_(out, idx, index ? index->numel() : out.size(0), shortcut, branch,
                   ptr<float>(sums));
  return sums;
}

}  // namespace aignet
