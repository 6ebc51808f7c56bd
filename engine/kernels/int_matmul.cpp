// Weight-only int8 / int4 matmuls for a few rows (decode steps, drafts) on x86 CPUs with AVX2.
//
// PyTorch's own CPU kernels for these weights widen every weight to fp32 before its FMA, so on AVX2 they are bound
// by arithmetic, not by reading the weights. Here, as in llama.cpp, each row of activations is quantized to int8
// per block of 32 (one fp32 scale per block) and the dot products run on 8-bit integers: 32 multiply-adds per
// instruction instead of 8. Each activation row is computed alone, with the same operations whatever the number of
// rows, so a row's result does not depend on the batch it came in.

#include "int_matmul.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>

namespace clinidoc {
namespace {

// Eight int32 partial sums of 32 products of unsigned bytes `u` (0..255, here at most 127 or 15) and signed `s`.
inline __m256i dot_bytes(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// Output rows per task: enough weight rows that a thread's share is worth waking it for.
constexpr int64_t kGrain = 16;

void multiply_int8(const IntWeight& w, const QuantizedRows& x, float* y) {
  const int64_t M = x.rows, K = x.cols, N = w.out_features, blocks = K / kBlock;
  const int8_t* weights = w.weight.data_ptr<int8_t>();
  const float* row_scales = w.scale.data_ptr<float>();
  at::parallel_for(0, N, kGrain, [&](int64_t first, int64_t last) {
    for (int64_t n = first; n < last; ++n) {
      const int8_t* wn = weights + n * K;
      for (int64_t m = 0; m < M; ++m) {
        const int8_t* xm = x.values.data() + m * K;
        const float* x_scales = x.scales.data() + m * blocks;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t b = 0; b < blocks; ++b) {
          const __m256i wb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wn + b * kBlock));
          const __m256i xb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + b * kBlock));
          // maddubs multiplies unsigned by signed bytes: move w's sign onto x.
          const __m256i products = dot_bytes(_mm256_sign_epi8(wb, wb), _mm256_sign_epi8(xb, wb));
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(products), _mm256_set1_ps(x_scales[b]), acc);
        }
        y[m * N + n] = horizontal_sum(acc) * row_scales[n];
      }
    }
  });
}

void multiply_int4(const IntWeight& w, const QuantizedRows& x, float* y) {
  const int64_t M = x.rows, K = x.cols, N = w.out_features, blocks = K / kBlock;
  const uint8_t* weights = w.weight.data_ptr<uint8_t>();
  const float* w_scales = w.scale.data_ptr<float>();
  const float* w_lows = w.low.data_ptr<float>();
  const __m128i low_nibbles = _mm_set1_epi8(0x0F);
  at::parallel_for(0, N, kGrain, [&](int64_t first, int64_t last) {
    for (int64_t n = first; n < last; ++n) {
      const uint8_t* wn = weights + n * (K / 2);
      const float* w_scale = w_scales + n * blocks;
      const float* w_low = w_lows + n * blocks;
      for (int64_t m = 0; m < M; ++m) {
        const int8_t* xm = x.values.data() + m * K;
        const float* x_scales = x.scales.data() + m * blocks;
        const float* x_sums = x.sums.data() + m * blocks;
        __m256 acc = _mm256_setzero_ps();
        float offset = 0.f;  // the lows' share: Σ over blocks of low · x's scale · Σ x's values
        for (int64_t b = 0; b < blocks; ++b) {
          const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wn + b * kBlock / 2));
          const __m256i wb = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), low_nibbles),
                                              _mm_and_si128(bytes, low_nibbles));
          const __m256i xb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + b * kBlock));
          const __m256 both = _mm256_set1_ps(x_scales[b] * w_scale[b]);
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_bytes(wb, xb)), both, acc);
          offset += w_low[b] * x_sums[b];
        }
        y[m * N + n] = horizontal_sum(acc) + offset;
      }
    }
  });
}

void check_rows(const torch::Tensor& x) {
  TORCH_CHECK(x.dtype() == torch::kFloat32 && x.is_contiguous() && x.dim() == 2, "x: contiguous fp32 [M, K]");
}

torch::Tensor multiply(const torch::Tensor& x, const IntWeight& w) {
  check_rows(x);
  TORCH_CHECK(x.size(1) == w.in_features, "x has ", x.size(1), " columns, the weight ", w.in_features, " inputs");
  QuantizedRows xq;
  xq.quantize(x.data_ptr<float>(), x.size(0), x.size(1));
  auto y = torch::empty({x.size(0), w.out_features}, x.options());
  w.multiply(xq, y.data_ptr<float>());
  return y;
}

}  // namespace

void QuantizedRows::quantize(const float* x, int64_t m, int64_t k) {
  TORCH_CHECK(k % kBlock == 0, "K must be a multiple of 32");
  rows = m;
  cols = k;
  const int64_t blocks = m * k / kBlock;
  values.resize(m * k);
  scales.resize(blocks);
  sums.resize(blocks);
  for (int64_t b = 0; b < blocks; ++b) {
    const float* v = x + b * kBlock;
    float amax = 0.f;
    for (int i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(v[i]));
    const float scale = amax / 127.f;
    const float inverse = scale > 0.f ? 1.f / scale : 0.f;
    int32_t sum = 0;
    for (int i = 0; i < kBlock; ++i) {
      const int32_t r = static_cast<int32_t>(std::nearbyint(v[i] * inverse));
      values[b * kBlock + i] = static_cast<int8_t>(r);
      sum += r;
    }
    scales[b] = scale;
    sums[b] = scale * static_cast<float>(sum);
  }
}

IntWeight::IntWeight(torch::Tensor weight_, torch::Tensor scale_, c10::optional<torch::Tensor> low_,
                     c10::optional<torch::Tensor> bias_)
    : weight(std::move(weight_)), scale(std::move(scale_)) {
  TORCH_CHECK(weight.dim() == 2 && weight.is_contiguous(), "weight: contiguous [out, in]");
  TORCH_CHECK(scale.dtype() == torch::kFloat32 && scale.is_contiguous(), "scale: contiguous fp32");
  int4 = low_.has_value();
  out_features = weight.size(0);
  if (int4) {
    low = *low_;
    in_features = weight.size(1) * 2;
    TORCH_CHECK(weight.dtype() == torch::kUInt8, "int4 weight: packed uint8 [out, in / 2]");
    TORCH_CHECK(low.dtype() == torch::kFloat32 && low.is_contiguous() && low.sizes() == scale.sizes(),
                "low: contiguous fp32, shaped as scale");
    TORCH_CHECK(scale.dim() == 2 && scale.size(0) == out_features && scale.size(1) * kBlock == in_features,
                "int4 scale: fp32 [out, in / 32]");
  } else {
    in_features = weight.size(1);
    TORCH_CHECK(weight.dtype() == torch::kInt8, "int8 weight: int8 [out, in]");
    TORCH_CHECK(scale.numel() == out_features, "int8 scale: fp32 [out]");
  }
  TORCH_CHECK(in_features % kBlock == 0, "inputs must be a multiple of 32, not ", in_features);
  if (bias_.has_value()) {
    bias = bias_->to(torch::kFloat32).contiguous();
    TORCH_CHECK(bias.numel() == out_features, "bias: [out]");
  }
}

void IntWeight::multiply(const QuantizedRows& x, float* y) const {
  TORCH_CHECK(x.cols == in_features, "x has ", x.cols, " columns, the weight ", in_features, " inputs");
  if (int4) {
    multiply_int4(*this, x, y);
  } else {
    multiply_int8(*this, x, y);
  }
  if (bias.defined()) {
    const float* b = bias.data_ptr<float>();
    for (int64_t m = 0; m < x.rows; ++m)
      for (int64_t n = 0; n < out_features; ++n) y[m * out_features + n] += b[n];
  }
}

torch::Tensor int8_matmul(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& scale) {
  return multiply(x, IntWeight(q, scale, c10::nullopt, c10::nullopt));
}

torch::Tensor int4_matmul(const torch::Tensor& x, const torch::Tensor& packed, const torch::Tensor& scale,
                          const torch::Tensor& low) {
  return multiply(x, IntWeight(packed, scale, low, c10::nullopt));
}

}  // namespace clinidoc
