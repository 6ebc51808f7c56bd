// Weight-only int8 / int4 matmuls for a few rows (decode steps, drafts) on x86 CPUs with AVX2.
//
// PyTorch's own CPU kernels for these weights widen every weight to fp32 before its FMA, so on AVX2 they are bound
// by arithmetic, not by reading the weights. Here, as in llama.cpp, each row of activations is quantized to int8
// per block of 32 (one fp32 scale per block) and the dot products run on 8-bit integers: 32 multiply-adds per
// instruction instead of 8. Each activation row is computed alone, with the same operations whatever the number of
// rows, so a row's result does not depend on the batch it came in.

#include "int_matmul.h"

#include "workers.h"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace clinidoc {
namespace {

// Eight int32 partial sums of 32 products of unsigned bytes `u` (0..255, here at most 127 or 15) and signed `s`.
inline __m256i dot_bytes(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// A weight's rows are stored in groups of kGroupRows, interleaved (engine/quantize.py, `interleave_rows`): in each
// block of 32 inputs, one 32-byte load holds four consecutive inputs of every row of the group, a row per 32-bit
// lane. Four inputs of x, broadcast to every lane, then multiply all eight rows in one instruction, and the lanes
// sum eight rows' dot products side by side: nothing is summed across lanes, and each block's scale is applied to
// eight rows at once. The last group of a weight whose rows are not a multiple of eight holds the rows it has.
constexpr int64_t kGroupRows = 8;

// Groups per task: enough weight rows that a thread's share is worth waking it for.
constexpr int64_t kGrain = 2;

// How far ahead of the block being multiplied its weights are asked for, into L2. One core's hardware prefetcher
// keeps too few reads in flight to stream a weight at the memory's speed, and these kernels compute faster than it
// streams; asking for lines well ahead, into L2 (whose queue is deeper than L1's), keeps more reads in flight.
constexpr int64_t kPrefetchBytes = 4096;

// Asks for the cache lines of `bytes` bytes from `p` + kPrefetchBytes (past a weight's end, a line nobody reads).
inline void prefetch_ahead(const void* p, int64_t bytes) {
  for (int64_t line = 0; line < bytes; line += 64)
    _mm_prefetch(static_cast<const char*>(p) + kPrefetchBytes + line, _MM_HINT_T1);
}

// The lanes of a group's rows: all eight but in a weight's last, narrower group.
inline __m256i lane_mask(int64_t rows) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rows)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Four bytes of each of a group's rows (a whole group's 32 bytes, or the last group's masked lanes).
template <bool Whole>
inline __m256i load_lanes(const void* p, __m256i mask) {
  if constexpr (Whole) return _mm256_loadu_si256(static_cast<const __m256i*>(p));
  return _mm256_maskload_epi32(static_cast<const int*>(p), mask);
}

// One fp16 value per row of a group (a block's scales or lows) as fp32; the lanes of missing rows are zero.
template <bool Whole>
inline __m256 load_halves(const uint16_t* p, int64_t rows) {
  if constexpr (Whole) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  alignas(16) uint16_t h[kGroupRows] = {};
  std::copy_n(p, rows, h);
  return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h)));
}

template <bool Whole>
inline void store_lanes(float* y, __m256 v, __m256i mask) {
  if constexpr (Whole) {
    _mm256_storeu_ps(y, v);
  } else {
    _mm256_maskstore_ps(y, mask, v);
  }
}

// Four consecutive inputs of x in every lane.
inline __m256i four_inputs(const int8_t* x) {
  int32_t v;
  std::memcpy(&v, x, sizeof v);
  return _mm256_set1_epi32(v);
}

// The group of `rows` weight rows from row n times quantized activation row m.
template <bool Whole>
void int8_group(const IntWeight& w, const QuantizedRows& x, int64_t m, int64_t n, int64_t rows, float* y) {
  const int64_t K = x.cols, blocks = K / kBlock, stride = Whole ? kGroupRows : rows;
  const int8_t* xm = x.values.data() + m * K;
  const float* x_scales = x.scales.data() + m * blocks;
  const int8_t* weights = static_cast<const int8_t*>(w.weight_data) + n * K;
  const uint16_t* w_scales = w.block_scales + n * blocks;
  const __m256i mask = lane_mask(rows);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const int8_t* block = weights + b * stride * kBlock;
    prefetch_ahead(block, stride * kBlock);
    __m256i total = _mm256_setzero_si256();
    for (int64_t j = 0; j < kBlock / 4; ++j) {
      const __m256i wv = load_lanes<Whole>(block + j * 4 * stride, mask);
      const __m256i xv = four_inputs(xm + b * kBlock + 4 * j);
      // maddubs multiplies unsigned by signed bytes, each pair summed in int16, which 127 · 127 · 2 fills: move w's
      // sign onto x, and widen to int32 at once.
      total = _mm256_add_epi32(total, dot_bytes(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)));
    }
    const __m256 both = _mm256_mul_ps(load_halves<Whole>(w_scales + b * stride, rows), _mm256_set1_ps(x_scales[b]));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), both, acc);
  }
  store_lanes<Whole>(y + m * w.out_features + n, acc, mask);
}

// The same for an int4 weight: a 32-byte load holds, for every row, inputs 4j .. 4j + 3 of a block in its low
// nibbles and 16 + 4j .. 16 + 4j + 3 in its high ones.
template <bool Whole>
void int4_group(const IntWeight& w, const QuantizedRows& x, int64_t m, int64_t n, int64_t rows, float* y) {
  const int64_t K = x.cols, blocks = K / kBlock, stride = Whole ? kGroupRows : rows;
  const int8_t* xm = x.values.data() + m * K;
  const float* x_scales = x.scales.data() + m * blocks;
  const float* x_sums = x.sums.data() + m * blocks;
  const uint8_t* weights = static_cast<const uint8_t*>(w.weight_data) + n * (K / 2);
  const uint16_t* w_scales = w.block_scales + n * blocks;
  const uint16_t* w_lows = w.block_lows + n * blocks;
  const __m256i mask = lane_mask(rows), nibble = _mm256_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps(), offset = _mm256_setzero_ps();  // offset: Σ over blocks of low · x's block sum
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* block = weights + b * stride * (kBlock / 2);
    prefetch_ahead(block, stride * kBlock / 2);
    const int8_t* xb = xm + b * kBlock;
    // Products of 4-bit weights and int8 inputs, |q · x| ≤ 15 · 127, summed in pairs: eight such sums fit in int16.
    __m256i pairs = _mm256_setzero_si256();
    for (int64_t j = 0; j < 4; ++j) {
      const __m256i wv = load_lanes<Whole>(block + j * 4 * stride, mask);
      const __m256i low = _mm256_and_si256(wv, nibble), high = _mm256_and_si256(_mm256_srli_epi16(wv, 4), nibble);
      pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(low, four_inputs(xb + 4 * j)));
      pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(high, four_inputs(xb + 16 + 4 * j)));
    }
    const __m256i total = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    const __m256 both = _mm256_mul_ps(load_halves<Whole>(w_scales + b * stride, rows), _mm256_set1_ps(x_scales[b]));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), both, acc);
    offset = _mm256_fmadd_ps(load_halves<Whole>(w_lows + b * stride, rows), _mm256_set1_ps(x_sums[b]), offset);
  }
  store_lanes<Whole>(y + m * w.out_features + n, _mm256_add_ps(acc, offset), mask);
}

int64_t groups_of(const IntWeight& w) { return (w.out_features + kGroupRows - 1) / kGroupRows; }

// The group of rows from row n times every row of x, the group read once for all of them while it is in the cache.
void multiply_group(const IntWeight& w, const QuantizedRows& x, int64_t n, float* y) {
  const int64_t rows = std::min(kGroupRows, w.out_features - n);
  for (int64_t m = 0; m < x.rows; ++m) {
    if (w.int4) {
      (rows == kGroupRows ? int4_group<true> : int4_group<false>)(w, x, m, n, rows, y);
    } else {
      (rows == kGroupRows ? int8_group<true> : int8_group<false>)(w, x, m, n, rows, y);
    }
  }
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
  multiply_each({{this, &x, y}});
  if (bias_data != nullptr) {
    for (int64_t m = 0; m < x.rows; ++m)
      for (int64_t n = 0; n < out_features; ++n) y[m * out_features + n] += bias_data[n];
  }
}

void multiply_each(const std::vector<Product>& products) {
  std::vector<int64_t> ends;  // each product's last group + 1, counting the groups of all products before it
  int64_t total = 0;
  for (const Product& p : products) {
    TORCH_CHECK(p.x->cols == p.weight->in_features, "x has ", p.x->cols, " columns, the weight ",
                p.weight->in_features, " inputs");
    total += groups_of(*p.weight);
    ends.push_back(total);
  }
  parallel_for(0, total, kGrain, [&](int64_t first, int64_t last) {
    auto i = static_cast<size_t>(std::upper_bound(ends.begin(), ends.end(), first) - ends.begin());
    for (int64_t g = first; g < last; ++g) {
      if (g == ends[i]) ++i;
      const Product& p = products[i];
      multiply_group(*p.weight, *p.x, (g - ends[i] + groups_of(*p.weight)) * kGroupRows, p.y);
    }
  });
}

at::Tensor int8_matmul(const at::Tensor& x, const at::Tensor& q, const at::Tensor& scale) {
  return multiply(x, IntWeight(q, scale, c10::nullopt, c10::nullopt));
}

at::Tensor int4_matmul(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scale,
                          const at::Tensor& low) {
  return multiply(x, IntWeight(packed, scale, low, c10::nullopt));
}

}  // namespace clinidoc
