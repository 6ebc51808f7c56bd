// Weight-only int8 / int4 matmuls for a few rows (decode steps, drafts) on x86 CPUs with AVX2.
//
// PyTorch's own CPU kernels for these weights widen every weight to fp32 before its FMA, so on AVX2 they are bound
// by arithmetic, not by reading the weights. Here, as in llama.cpp, each row of activations is quantized to int8
// per block of 32 (one fp32 scale per block) and the dot products run on 8-bit integers: 32 multiply-adds per
// instruction instead of 8. Each activation row is computed alone, with the same operations whatever the number of
// rows, so a row's result does not depend on the batch it came in.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <cmath>
#include <cstdint>

namespace {

constexpr int64_t kBlock = 32;

// x [M, K] fp32 → int8 values, one scale per block of 32, and each block's sum of values.
struct QuantizedRows {
  torch::Tensor values;  // int8 [M, K]
  torch::Tensor scales;  // fp32 [M, K / 32]
  torch::Tensor sums;    // fp32 [M, K / 32]: each block's scale times the sum of its values
};

QuantizedRows quantize_rows(const torch::Tensor& x) {
  TORCH_CHECK(x.dtype() == torch::kFloat32 && x.is_contiguous() && x.dim() == 2, "x: contiguous fp32 [M, K]");
  TORCH_CHECK(x.size(1) % kBlock == 0, "K must be a multiple of 32");
  const int64_t M = x.size(0), K = x.size(1), blocks = K / kBlock;
  QuantizedRows q{torch::empty({M, K}, x.options().dtype(torch::kInt8)),
                  torch::empty({M, blocks}, x.options()), torch::empty({M, blocks}, x.options())};
  const float* src = x.data_ptr<float>();
  int8_t* values = q.values.data_ptr<int8_t>();
  float* scales = q.scales.data_ptr<float>();
  float* sums = q.sums.data_ptr<float>();
  for (int64_t b = 0; b < M * blocks; ++b) {
    const float* v = src + b * kBlock;
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
  return q;
}

inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Eight int32 partial sums of 32 products of unsigned bytes `u` (0..255, here at most 127 or 15) and signed `s`.
inline __m256i dot_bytes(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

}  // namespace

// y [M, N] = x [M, K] · (q · scale)ᵀ with q int8 [N, K] and scale fp32 [N].
torch::Tensor int8_matmul(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& scale) {
  TORCH_CHECK(q.dtype() == torch::kInt8 && q.is_contiguous() && q.size(1) == x.size(1), "q: int8 [N, K]");
  const int64_t M = x.size(0), K = x.size(1), N = q.size(0), blocks = K / kBlock;
  const QuantizedRows xq = quantize_rows(x);
  auto y = torch::empty({M, N}, x.options());
  const int8_t* weights = q.data_ptr<int8_t>();
  const float* row_scales = scale.data_ptr<float>();
  const int8_t* values = xq.values.data_ptr<int8_t>();
  const float* scales = xq.scales.data_ptr<float>();
  float* out = y.data_ptr<float>();
  at::parallel_for(0, N, 16, [&](int64_t first, int64_t last) {
    for (int64_t n = first; n < last; ++n) {
      const int8_t* w = weights + n * K;
      for (int64_t m = 0; m < M; ++m) {
        __m256 acc = _mm256_setzero_ps();
        for (int64_t b = 0; b < blocks; ++b) {
          const __m256i wb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + b * kBlock));
          const __m256i xb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + m * K + b * kBlock));
          // maddubs multiplies unsigned by signed bytes: move w's sign onto x.
          const __m256i products = dot_bytes(_mm256_sign_epi8(wb, wb), _mm256_sign_epi8(xb, wb));
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(products), _mm256_set1_ps(scales[m * blocks + b]), acc);
        }
        out[m * N + n] = horizontal_sum(acc) * row_scales[n];
      }
    }
  });
  return y;
}

// y [M, N] = x [M, K] · Wᵀ with W's block b of row n = q · scale[n, b] + low[n, b]: q 4-bit, packed [N, K / 2] with
// byte j of a block holding element j in its low nibble and element j + 16 in its high one; scale and low fp32
// [N, K / 32].
torch::Tensor int4_matmul(const torch::Tensor& x, const torch::Tensor& packed, const torch::Tensor& scale,
                          const torch::Tensor& low) {
  TORCH_CHECK(packed.dtype() == torch::kUInt8 && packed.is_contiguous() && packed.size(1) * 2 == x.size(1),
              "packed: uint8 [N, K / 2]");
  const int64_t M = x.size(0), K = x.size(1), N = packed.size(0), blocks = K / kBlock;
  const QuantizedRows xq = quantize_rows(x);
  auto y = torch::empty({M, N}, x.options());
  const uint8_t* weights = packed.data_ptr<uint8_t>();
  const float* w_scales = scale.data_ptr<float>();
  const float* w_lows = low.data_ptr<float>();
  const int8_t* values = xq.values.data_ptr<int8_t>();
  const float* scales = xq.scales.data_ptr<float>();
  const float* sums = xq.sums.data_ptr<float>();
  float* out = y.data_ptr<float>();
  const __m128i low_nibbles = _mm_set1_epi8(0x0F);
  at::parallel_for(0, N, 16, [&](int64_t first, int64_t last) {
    for (int64_t n = first; n < last; ++n) {
      const uint8_t* w = weights + n * (K / 2);
      const float* w_scale = w_scales + n * blocks;
      const float* w_low = w_lows + n * blocks;
      for (int64_t m = 0; m < M; ++m) {
        __m256 acc = _mm256_setzero_ps();
        float offset = 0.f;  // the lows' share: Σ over blocks of low · x's scale · Σ x's values
        for (int64_t b = 0; b < blocks; ++b) {
          const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + b * kBlock / 2));
          const __m256i wb = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), low_nibbles),
                                              _mm_and_si128(bytes, low_nibbles));
          const __m256i xb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + m * K + b * kBlock));
          const __m256 both = _mm256_set1_ps(scales[m * blocks + b] * w_scale[b]);
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_bytes(wb, xb)), both, acc);
          offset += w_low[b] * sums[m * blocks + b];
        }
        out[m * N + n] = horizontal_sum(acc) + offset;
      }
    }
  });
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("int8_matmul", &int8_matmul, "x · (int8 q · per-row scale)ᵀ, x quantized to int8 per block of 32");
  m.def("int4_matmul", &int4_matmul, "x · (4-bit q · scale + low per block of 32)ᵀ, x quantized to int8 per block of 32");
}
