// Weight-only int8 / int4 matmuls for a few rows of activations (decode steps, drafts) on x86 CPUs with AVX2.
#pragma once

#include <immintrin.h>
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace clinidoc {

constexpr int64_t kBlock = 32;

// The sum of a vector's eight floats.
inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Rows of activations quantized to int8 per block of 32, one fp32 scale per block, as the integer dot products
// read them. Held in vectors that a caller reuses from one matmul to the next.
struct QuantizedRows {
  std::vector<int8_t> values;  // [rows, cols]
  std::vector<float> scales;   // [rows, cols / 32]
  std::vector<float> sums;     // [rows, cols / 32]: each block's scale times the sum of its values
  int64_t rows = 0, cols = 0;

  void quantize(const float* x, int64_t rows, int64_t cols);
};

// A projection's weight held in integers (engine/quantize.py): int8 [out, in] with an fp16 scale per block of 32
// inputs (GGUF's Q8_0), or 4-bit values packed [out, in / 2] with an fp16 scale and low per block of 32 inputs
// (W = q · scale + low, GGUF's Q4_1). Values, scales and lows are stored with their rows interleaved in groups of
// eight (`interleave_rows`), as int_matmul.cpp reads them.
struct IntWeight {
  at::Tensor weight, scale, low, bias;  // low: int4 only; bias: may be undefined
  int64_t out_features = 0, in_features = 0;
  bool int4 = false;
  // The tensors' data, looked up once: a tensor's data_ptr checks its type on every call.
  const void* weight_data = nullptr;
  const float* bias_data = nullptr;
  const uint16_t *block_scales = nullptr, *block_lows = nullptr;  // as fp16 bits; lows: int4 only

  IntWeight(at::Tensor weight, at::Tensor scale, c10::optional<at::Tensor> low,
            c10::optional<at::Tensor> bias);

  // y [x.rows, out_features] = x · Wᵀ (+ bias). Each row of y depends only on its own row of x.
  void multiply(const QuantizedRows& x, float* y) const;
};

// y [x.rows, W's outputs] = x · Wᵀ, without W's bias.
struct Product {
  const IntWeight* weight;
  const QuantizedRows* x;
  float* y;
};

// Several products in one parallel pass over all their weights' rows: a MoE layer's experts, each a small matmul,
// wake the threads once rather than once each.
void multiply_each(const std::vector<Product>& products);

at::Tensor int8_matmul(const at::Tensor& x, const at::Tensor& q, const at::Tensor& scale);
at::Tensor int4_matmul(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scale,
                          const at::Tensor& low);

}  // namespace clinidoc
