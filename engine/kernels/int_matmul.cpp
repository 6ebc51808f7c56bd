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

// Weight rows per pass over an activation row: each block of x is loaded once for all of them, and their
// accumulators are independent chains, so the FMA latency of one row hides behind the others.
constexpr int64_t kRowsAtOnce = 4;

// Rows n .. n + R of an int8 weight times one quantized activation row.
template <int64_t R>
void int8_rows(const IntWeight& w, const QuantizedRows& x, int64_t m, int64_t n, float* y) {
  const int64_t K = x.cols, blocks = K / kBlock;
  const int8_t* xm = x.values.data() + m * K;
  const float* x_scales = x.scales.data() + m * blocks;
  const int8_t* weights = static_cast<const int8_t*>(w.weight_data) + n * K;
  const uint16_t* w_scales = w.block_scales + n * blocks;
  __m256 acc[R];
  for (int64_t r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const __m256i xb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + b * kBlock));
    for (int64_t r = 0; r < R; ++r) {
      const __m256i wb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(weights + r * K + b * kBlock));
      // maddubs multiplies unsigned by signed bytes: move w's sign onto x.
      const __m256i products = dot_bytes(_mm256_sign_epi8(wb, wb), _mm256_sign_epi8(xb, wb));
      const __m256 both = _mm256_set1_ps(x_scales[b] * _cvtsh_ss(w_scales[r * blocks + b]));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(products), both, acc[r]);
    }
  }
  for (int64_t r = 0; r < R; ++r) y[m * w.out_features + n + r] = horizontal_sum(acc[r]);
}

// Rows n .. n + R of an int4 weight times one quantized activation row. The fp16 scales and lows are widened eight
// blocks at a time (F16C), so the loop over a block's 32 weights holds no scalar conversion.
template <int64_t R>
void int4_rows(const IntWeight& w, const QuantizedRows& x, int64_t m, int64_t n, float* y) {
  const int64_t K = x.cols, blocks = K / kBlock;
  const int8_t* xm = x.values.data() + m * K;
  const float* x_scales = x.scales.data() + m * blocks;
  const float* x_sums = x.sums.data() + m * blocks;
  const uint8_t* weights = static_cast<const uint8_t*>(w.weight_data) + n * (K / 2);
  const uint16_t* w_scales = w.block_scales + n * blocks;
  const uint16_t* w_lows = w.block_lows + n * blocks;
  const __m128i low_nibbles = _mm_set1_epi8(0x0F);
  __m256 acc[R], offset[R];  // offset: the lows' share, Σ over blocks of low · x's scale · Σ x's values
  for (int64_t r = 0; r < R; ++r) acc[r] = offset[r] = _mm256_setzero_ps();
  alignas(32) float both[R][8];  // x's scale times each row's weight scale, for eight blocks
  for (int64_t b0 = 0; b0 < blocks; b0 += 8) {
    const int64_t count = std::min<int64_t>(8, blocks - b0);
    __m256 xs, xsum;
    if (count == 8) {
      xs = _mm256_loadu_ps(x_scales + b0);
      xsum = _mm256_loadu_ps(x_sums + b0);
    } else {  // the last few blocks of a row whose block count is not a multiple of eight; the rest lanes are zero
      alignas(32) float s[8] = {}, t[8] = {};
      std::copy_n(x_scales + b0, count, s);
      std::copy_n(x_sums + b0, count, t);
      xs = _mm256_load_ps(s);
      xsum = _mm256_load_ps(t);
    }
    for (int64_t r = 0; r < R; ++r) {
      alignas(16) uint16_t s[8] = {}, l[8] = {};
      std::copy_n(w_scales + r * blocks + b0, count, s);
      std::copy_n(w_lows + r * blocks + b0, count, l);
      const __m256 scales = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(s)));
      const __m256 lows = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(l)));
      _mm256_store_ps(both[r], _mm256_mul_ps(scales, xs));
      offset[r] = _mm256_fmadd_ps(lows, xsum, offset[r]);
    }
    for (int64_t i = 0; i < count; ++i) {
      const int64_t b = b0 + i;
      const __m256i xb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + b * kBlock));
      for (int64_t r = 0; r < R; ++r) {
        const __m128i bytes =
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(weights + r * (K / 2) + b * kBlock / 2));
        const __m256i wb = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), low_nibbles),
                                            _mm_and_si128(bytes, low_nibbles));
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_bytes(wb, xb)), _mm256_broadcast_ss(&both[r][i]), acc[r]);
      }
    }
  }
  for (int64_t r = 0; r < R; ++r) y[m * w.out_features + n + r] = horizontal_sum(_mm256_add_ps(acc[r], offset[r]));
}

// y = x · Wᵀ, kRowsAtOnce weight rows at a time (one at a time for a range's last few), each read once for all of
// x's rows while it is in the cache.
template <typename Rows, typename Row>
void multiply_rows(const IntWeight& w, const QuantizedRows& x, float* y, Rows rows, Row row) {
  at::parallel_for(0, w.out_features, kGrain, [&](int64_t first, int64_t last) {
    for (int64_t n = first; n < last; n += kRowsAtOnce) {
      for (int64_t m = 0; m < x.rows; ++m) {
        if (n + kRowsAtOnce <= last) {
          rows(w, x, m, n, y);
        } else {
          for (int64_t tail = n; tail < last; ++tail) row(w, x, m, tail, y);
        }
      }
    }
  });
}

void check_rows(const at::Tensor& x) {
  TORCH_CHECK(x.dtype() == at::kFloat && x.is_contiguous() && x.dim() == 2, "x: contiguous fp32 [M, K]");
}

at::Tensor multiply(const at::Tensor& x, const IntWeight& w) {
  check_rows(x);
  TORCH_CHECK(x.size(1) == w.in_features, "x has ", x.size(1), " columns, the weight ", w.in_features, " inputs");
  QuantizedRows xq;
  xq.quantize(x.data_ptr<float>(), x.size(0), x.size(1));
  auto y = at::empty({x.size(0), w.out_features}, x.options());
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
  const __m256 sign = _mm256_set1_ps(-0.f);
  // After the two packs below, the block's four groups of eight sit as dwords 0, 4, 1, 5, 2, 6, 3, 7.
  const __m256i in_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < blocks; ++b) {
    const float* v = x + b * kBlock;
    __m256 parts[4];
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      parts[i] = _mm256_loadu_ps(v + 8 * i);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, parts[i]));
    }
    __m128 top = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    top = _mm_max_ps(top, _mm_movehl_ps(top, top));
    top = _mm_max_ss(top, _mm_movehdup_ps(top));
    const float scale = _mm_cvtss_f32(top) / 127.f;
    const __m256 inverse = _mm256_set1_ps(scale > 0.f ? 1.f / scale : 0.f);
    __m256i rounded[4];  // to nearest, ties to even: the CPU's default rounding mode
    for (int i = 0; i < 4; ++i) rounded[i] = _mm256_cvtps_epi32(_mm256_mul_ps(parts[i], inverse));
    const __m256i total = _mm256_add_epi32(_mm256_add_epi32(rounded[0], rounded[1]),
                                           _mm256_add_epi32(rounded[2], rounded[3]));
    const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(rounded[0], rounded[1]),
                                              _mm256_packs_epi32(rounded[2], rounded[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(values.data() + b * kBlock),
                        _mm256_permutevar8x32_epi32(packed, in_order));
    scales[b] = scale;
    sums[b] = scale * horizontal_sum(_mm256_cvtepi32_ps(total));
  }
}

IntWeight::IntWeight(at::Tensor weight_, at::Tensor scale_, c10::optional<at::Tensor> low_,
                     c10::optional<at::Tensor> bias_)
    : weight(std::move(weight_)), scale(std::move(scale_)) {
  TORCH_CHECK(weight.dim() == 2 && weight.is_contiguous(), "weight: contiguous [out, in]");
  TORCH_CHECK(scale.is_contiguous(), "scale: contiguous");
  int4 = low_.has_value();
  out_features = weight.size(0);
  if (int4) {
    low = *low_;
    in_features = weight.size(1) * 2;
    TORCH_CHECK(weight.dtype() == at::kByte, "int4 weight: packed uint8 [out, in / 2]");
    TORCH_CHECK(scale.dtype() == at::kHalf && low.dtype() == at::kHalf && low.is_contiguous() &&
                    low.sizes() == scale.sizes(), "int4 scale and low: contiguous fp16, the same shape");
    TORCH_CHECK(scale.dim() == 2 && scale.size(0) == out_features && scale.size(1) * kBlock == in_features,
                "int4 scale: [out, in / 32]");
  } else {
    in_features = weight.size(1);
    TORCH_CHECK(weight.dtype() == at::kChar, "int8 weight: int8 [out, in]");
    TORCH_CHECK(scale.dtype() == at::kHalf && scale.dim() == 2 && scale.size(0) == out_features &&
                    scale.size(1) * kBlock == in_features, "int8 scale: fp16 [out, in / 32]");
  }
  TORCH_CHECK(in_features % kBlock == 0, "inputs must be a multiple of 32, not ", in_features);
  if (bias_.has_value()) {
    bias = bias_->to(at::kFloat).contiguous();
    TORCH_CHECK(bias.numel() == out_features, "bias: [out]");
    bias_data = bias.data_ptr<float>();
  }
  weight_data = weight.data_ptr();
  block_scales = reinterpret_cast<const uint16_t*>(scale.data_ptr<at::Half>());
  if (int4) block_lows = reinterpret_cast<const uint16_t*>(low.data_ptr<at::Half>());
}

void IntWeight::multiply(const QuantizedRows& x, float* y) const {
  TORCH_CHECK(x.cols == in_features, "x has ", x.cols, " columns, the weight ", in_features, " inputs");
  if (int4) {
    multiply_rows(*this, x, y, int4_rows<kRowsAtOnce>, int4_rows<1>);
  } else {
    multiply_rows(*this, x, y, int8_rows<kRowsAtOnce>, int8_rows<1>);
  }
  if (bias_data != nullptr) {
    for (int64_t m = 0; m < x.rows; ++m)
      for (int64_t n = 0; n < out_features; ++n) y[m * out_features + n] += bias_data[n];
  }
}

at::Tensor int8_matmul(const at::Tensor& x, const at::Tensor& q, const at::Tensor& scale) {
  return multiply(x, IntWeight(q, scale, c10::nullopt, c10::nullopt));
}

at::Tensor int4_matmul(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scale,
                          const at::Tensor& low) {
  return multiply(x, IntWeight(packed, scale, low, c10::nullopt));
}

}  // namespace clinidoc
