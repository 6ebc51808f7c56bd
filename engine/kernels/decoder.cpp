// A decoder's forward pass of a few tokens (a decode step, a draft to verify, a short batch) in one call: the Llama
// family, and BailingMoeV2's MoE layers with their router and routed experts.
//
// In eager PyTorch a decode step of SmolLM2-135M is some 600 small ops (norms, rotary, cache writes, attention,
// SwiGLU, residuals, the projections), and each costs more in dispatch than in arithmetic; a MoE layer adds the
// routing and a matmul per chosen expert. Here the whole pass is plain loops over the weights and the KV cache that
// engine/models holds, with the int8/int4 projections of int_matmul.cpp. Every token is computed alone, with the same operations whatever the number of tokens or rows
// beside it, so a draft verifies exactly as one-token steps would decode and a batched row equals the row alone.

#include "decoder.h"

#include "workers.h"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace clinidoc {
namespace {

// e^x for x in fp32's range (clamped to [-87, 88]): 2^n · e^r with n = round(x / ln 2), |r| ≤ ln 2 / 2, and e^r
// from its Taylor series to r^7 (relative error under 2e-8 before rounding).
inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.f)), _mm256_set1_ps(88.f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // ln 2 in two parts: n · ln2_hi is exact, so r loses nothing to cancellation.
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.f / 5040.f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 720.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  const __m256i two_to_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(two_to_n));
}

inline float dot(const float* a, const float* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  return horizontal_sum(acc);
}

// y = x / sqrt(mean(x²) + eps) · weight, for n a multiple of 8.
void rms_norm(const float* x, const float* weight, float eps, int64_t n, float* y) {
  const float inverse = 1.f / std::sqrt(dot(x, x, n) / static_cast<float>(n) + eps);
  const __m256 factor = _mm256_set1_ps(inverse);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), factor);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(v, _mm256_loadu_ps(weight + i)));
  }
}

void add(float* x, const float* delta, int64_t n) {
  for (int64_t i = 0; i < n; i += 8)
    _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(delta + i)));
}

// SwiGLU's middle: out = silu(gate) · up = gate / (1 + e^-gate) · up.
void silu_times(const float* gate, const float* up, int64_t n, float* out) {
  const __m256 one = _mm256_set1_ps(1.f);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 sigmoid = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(g, sigmoid), _mm256_loadu_ps(up + i)));
  }
}

// out[0, D) = Σ_j w[j] · v_j over n value rows v_j = values + j · D, 64 dims at a time in registers (then 8 at a
// time for the rest of D).
template <int64_t Lanes>
void weighted_sum_part(const float* w, const float* values, int64_t n, int64_t D, float* out) {
  __m256 acc[Lanes];
  for (int64_t l = 0; l < Lanes; ++l) acc[l] = _mm256_setzero_ps();
  for (int64_t j = 0; j < n; ++j) {
    const __m256 weight = _mm256_set1_ps(w[j]);
    const float* v = values + j * D;
    for (int64_t l = 0; l < Lanes; ++l) acc[l] = _mm256_fmadd_ps(weight, _mm256_loadu_ps(v + 8 * l), acc[l]);
  }
  for (int64_t l = 0; l < Lanes; ++l) _mm256_storeu_ps(out + 8 * l, acc[l]);
}

void weighted_sum(const float* w, const float* values, int64_t n, int64_t D, float* out) {
  int64_t d = 0;
  for (; d + 64 <= D; d += 64) weighted_sum_part<8>(w, values + d, n, D, out + d);
  for (; d < D; d += 8) weighted_sum_part<1>(w, values + d, n, D, out + d);
}

const float* data(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

void check_vector(const at::Tensor& t, int64_t n, const char* name) {
  TORCH_CHECK(t.dtype() == at::kFloat && t.is_contiguous() && t.numel() == n, name, ": contiguous fp32 [", n,
              "]");
}

}  // namespace

RoutedExperts::RoutedExperts(at::Tensor router_, at::Tensor bias_, std::vector<IntWeight> gate_,
                             std::vector<IntWeight> up_, std::vector<IntWeight> down_, int64_t top_k_, int64_t groups_,
                             int64_t top_groups_, bool normalize_, double scaling_)
    : router(std::move(router_)), bias(std::move(bias_)), gate(std::move(gate_)), up(std::move(up_)),
      down(std::move(down_)), top_k(top_k_), groups(groups_), top_groups(top_groups_), normalize(normalize_),
      scaling(static_cast<float>(scaling_)) {
  TORCH_CHECK(router.dtype() == at::kFloat && router.is_contiguous() && router.dim() == 2,
              "router: contiguous fp32 [experts, hidden]");
  const int64_t experts = router.size(0), hidden = router.size(1);
  check_vector(bias, experts, "expert bias");
  TORCH_CHECK(static_cast<int64_t>(gate.size()) == experts && up.size() == gate.size() && down.size() == gate.size(),
              "one gate, up and down projection per expert");
  TORCH_CHECK(groups > 0 && experts % groups == 0 && experts / groups >= 2 && top_groups >= 1 &&
                  top_groups <= groups && top_k >= 1 && top_k <= top_groups * (experts / groups),
              "expert groups: whole groups of two or more, enough kept for top_k");
  for (int64_t e = 0; e < experts; ++e) {
    const int64_t I = down[e].in_features;
    TORCH_CHECK(gate[e].in_features == hidden && up[e].in_features == hidden && gate[e].out_features == I &&
                    up[e].out_features == I && down[e].out_features == hidden && I % 8 == 0,
                "expert ", e, ": gate and up [I, hidden], down [hidden, I]");
  }
}

void RoutedExperts::route(const float* x, int64_t* ids, float* weights) const {
  const int64_t experts = router.size(0), hidden = router.size(1), per_group = experts / groups;
  const float* w = router.data_ptr<float>();
  const float* b = bias.data_ptr<float>();
  std::vector<float> scores(experts), choice(experts);
  for (int64_t e = 0; e < experts; ++e) {
    scores[e] = 1.f / (1.f + std::exp(-dot(x, w + e * hidden, hidden)));
    choice[e] = scores[e] + b[e];
  }
  // Rank by score, the lower index first among equals.
  auto better = [](const std::vector<float>& by) {
    return [&by](int64_t i, int64_t j) { return by[i] > by[j] || (by[i] == by[j] && i < j); };
  };
  std::vector<float> group_score(groups);
  for (int64_t g = 0; g < groups; ++g) {
    float first = -std::numeric_limits<float>::infinity(), second = first;
    for (int64_t e = g * per_group; e < (g + 1) * per_group; ++e) {
      if (choice[e] > first) {
        second = first;
        first = choice[e];
      } else if (choice[e] > second) {
        second = choice[e];
      }
    }
    group_score[g] = first + second;
  }
  std::vector<int64_t> kept(groups);
  for (int64_t g = 0; g < groups; ++g) kept[g] = g;
  std::partial_sort(kept.begin(), kept.begin() + top_groups, kept.end(), better(group_score));
  std::vector<int64_t> candidates;
  for (int64_t i = 0; i < top_groups; ++i)
    for (int64_t e = kept[i] * per_group; e < (kept[i] + 1) * per_group; ++e) candidates.push_back(e);
  std::partial_sort(candidates.begin(), candidates.begin() + top_k, candidates.end(), better(choice));
  float total = 0.f;
  for (int64_t j = 0; j < top_k; ++j) {
    ids[j] = candidates[j];
    weights[j] = scores[candidates[j]];
    total += weights[j];
  }
  for (int64_t j = 0; j < top_k; ++j) weights[j] = (normalize ? weights[j] / (total + 1e-20f) : weights[j]) * scaling;
}

void RoutedExperts::apply(const float* x, int64_t rows, float* out) const {
  const int64_t experts = router.size(0), H = router.size(1), k = top_k;
  std::vector<int64_t> ids(rows * k);
  std::vector<float> weights(rows * k);
  for (int64_t r = 0; r < rows; ++r) route(x + r * H, ids.data() + r * k, weights.data() + r * k);
  // Each expert's slots (row · k + rank) among the rows that chose it.
  std::vector<std::vector<int64_t>> slots(experts);
  for (int64_t s = 0; s < rows * k; ++s) slots[ids[s]].push_back(s);
  std::vector<int64_t> chosen;
  for (int64_t e = 0; e < experts; ++e)
    if (!slots[e].empty()) chosen.push_back(e);
  // Per chosen expert: its rows' inputs, the gate and up outputs side by side, and the activations between.
  const size_t count = chosen.size();
  std::vector<QuantizedRows> inputs(count), activations(count);
  std::vector<std::vector<float>> gate_up(count), results(count);
  std::vector<Product> products;
  std::vector<float> row_inputs;
  for (size_t i = 0; i < count; ++i) {
    const int64_t e = chosen[i], n = static_cast<int64_t>(slots[e].size()), I = down[e].in_features;
    row_inputs.resize(n * H);
    for (int64_t j = 0; j < n; ++j) std::copy_n(x + slots[e][j] / k * H, H, row_inputs.data() + j * H);
    inputs[i].quantize(row_inputs.data(), n, H);
    gate_up[i].resize(2 * n * I);
    products.push_back({&gate[e], &inputs[i], gate_up[i].data()});
    products.push_back({&up[e], &inputs[i], gate_up[i].data() + n * I});
  }
  multiply_each(products);
  products.clear();
  std::vector<float> act;
  for (size_t i = 0; i < count; ++i) {
    const int64_t e = chosen[i], n = static_cast<int64_t>(slots[e].size()), I = down[e].in_features;
    act.resize(n * I);
    const float* g = gate_up[i].data();
    for (int64_t j = 0; j < n; ++j) silu_times(g + j * I, g + (n + j) * I, I, act.data() + j * I);
    activations[i].quantize(act.data(), n, I);
    results[i].resize(n * H);
    products.push_back({&down[e], &activations[i], results[i].data()});
  }
  multiply_each(products);
  // Each slot's expert output, in the order of the rows' choices.
  std::vector<const float*> output(rows * k);
  for (size_t i = 0; i < count; ++i)
    for (size_t j = 0; j < slots[chosen[i]].size(); ++j) output[slots[chosen[i]][j]] = results[i].data() + j * H;
  for (int64_t r = 0; r < rows; ++r) {
    float* o = out + r * H;
    std::fill(o, o + H, 0.f);
    for (int64_t j = 0; j < k; ++j) {
      const float w = weights[r * k + j];
      const float* y = output[r * k + j];
      for (int64_t d = 0; d < H; ++d) o[d] += w * y[d];
    }
  }
}

DecoderLayer::DecoderLayer(at::Tensor input_norm_, at::Tensor post_norm_, c10::optional<at::Tensor> q_norm_,
                           c10::optional<at::Tensor> k_norm_, IntWeight qkv_, IntWeight o_, IntWeight gate_up_,
                           IntWeight down_, std::optional<RoutedExperts> experts_)
    : input_norm(std::move(input_norm_)), post_norm(std::move(post_norm_)), qkv(std::move(qkv_)), o(std::move(o_)),
      gate_up(std::move(gate_up_)), down(std::move(down_)), experts(std::move(experts_)) {
  if (q_norm_.has_value()) q_norm = *q_norm_;
  if (k_norm_.has_value()) k_norm = *k_norm_;
}

Decoder::Decoder(at::Tensor embedding_, std::vector<DecoderLayer> layers_, at::Tensor final_norm_, IntWeight head_,
                 at::Tensor cos_, at::Tensor signed_sin_, int64_t heads_, int64_t kv_heads_, int64_t head_dim_,
                 double eps_)
    : embedding(std::move(embedding_)), layers(std::move(layers_)), final_norm(std::move(final_norm_)),
      head(std::move(head_)), cos(std::move(cos_)), signed_sin(std::move(signed_sin_)), heads(heads_),
      kv_heads(kv_heads_), head_dim(head_dim_), eps(static_cast<float>(eps_)) {
  TORCH_CHECK(embedding.dtype() == at::kFloat && embedding.is_contiguous() && embedding.dim() == 2,
              "embedding: contiguous fp32 [vocab, hidden]");
  hidden = embedding.size(1);
  TORCH_CHECK(hidden % kBlock == 0 && head_dim % 8 == 0 && heads % kv_heads == 0, "unsupported shape");
  TORCH_CHECK(cos.dtype() == at::kFloat && cos.is_contiguous() && cos.sizes() == signed_sin.sizes() &&
                  signed_sin.is_contiguous() && cos.size(1) <= head_dim && cos.size(1) % 2 == 0,
              "rotary tables: contiguous fp32 [positions, rotary dims]");
  rotary_dim = cos.size(1);
  check_vector(final_norm, hidden, "final norm");
  TORCH_CHECK(head.in_features == hidden, "the output head must take the hidden size");
  const int64_t q = heads * head_dim, kv = kv_heads * head_dim;
  for (const DecoderLayer& layer : layers) {
    check_vector(layer.input_norm, hidden, "input norm");
    check_vector(layer.post_norm, hidden, "post-attention norm");
    if (layer.q_norm.defined()) check_vector(layer.q_norm, head_dim, "q norm");
    if (layer.k_norm.defined()) check_vector(layer.k_norm, head_dim, "k norm");
    TORCH_CHECK(layer.qkv.in_features == hidden && layer.qkv.out_features == q + 2 * kv, "qkv: [q + 2 kv, hidden]");
    TORCH_CHECK(layer.o.in_features == q && layer.o.out_features == hidden, "o: [hidden, q]");
    TORCH_CHECK(layer.gate_up.in_features == hidden && layer.gate_up.out_features % 16 == 0, "gate_up: [2 I, hidden]");
    TORCH_CHECK(layer.down.in_features * 2 == layer.gate_up.out_features && layer.down.out_features == hidden,
                "down: [hidden, I]");
    if (layer.experts) TORCH_CHECK(layer.experts->router.size(1) == hidden, "router: [experts, hidden]");
  }
}

// RoPE in place on `count` heads of one token at `position`: x · cos + swapped(x) · signed_sin over the rotary
// dims (engine/layers.py's Rotation); the dims past them pass through.
void Decoder::rotate(float* x, int64_t count, int64_t position) const {
  const int64_t half = rotary_dim / 2;
  const float* c = cos.data_ptr<float>() + position * rotary_dim;
  const float* s = signed_sin.data_ptr<float>() + position * rotary_dim;
  for (int64_t h = 0; h < count; ++h) {
    float* v = x + h * head_dim;
    for (int64_t d = 0; d < half; ++d) {
      const float first = v[d], second = v[d + half];
      v[d] = first * c[d] + second * s[d];
      v[d + half] = second * c[d + half] + first * s[d + half];
    }
  }
}

// Attention of every token's query heads over its own cache, causal: a token at position p reads positions 0..p.
// Each (token, KV head, chunk of positions) is a task with its own softmax; the chunks then merge by their maxima.
void Decoder::attend(const float* qkv, const Batch& batch, int64_t layer, std::vector<float>& partial,
                     float* out) const {
  const int64_t group = heads / kv_heads, D = head_dim, width = (heads + 2 * kv_heads) * D;
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  const std::vector<Batch::AttentionTask>& tasks = batch.tasks;
  // Per task and query head: the weighted sum of values (D), then the chunk's max score and sum of weights.
  const int64_t stride = D + 2;
  partial.resize(tasks.size() * group * stride);
  parallel_for(0, static_cast<int64_t>(tasks.size()), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> weights(group * kAttentionChunk);
    for (int64_t i = begin; i < end; ++i) {
      const Batch::AttentionTask& task = tasks[i];
      const int64_t n = task.last - task.first;
      const float* keys = batch.keys(task.row, layer, task.kv_head);
      const float* values = batch.values(task.row, layer, task.kv_head);
      const float* queries = qkv + task.row * width + task.kv_head * group * D;
      for (int64_t h = 0; h < group; ++h) {
        float* w = weights.data() + h * kAttentionChunk;
        float top = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < n; ++j) {
          w[j] = dot(queries + h * D, keys + (task.first + j) * D, D) * scale;
          top = std::max(top, w[j]);
        }
        for (int64_t j = n; j < (n + 7) / 8 * 8; ++j) w[j] = top;  // padding lanes, never summed
        const __m256 shift = _mm256_set1_ps(top);
        for (int64_t j = 0; j < n; j += 8)
          _mm256_storeu_ps(w + j, exp8(_mm256_sub_ps(_mm256_loadu_ps(w + j), shift)));
        float* slot = partial.data() + (i * group + h) * stride;
        float total = 0.f;
        for (int64_t j = 0; j < n; ++j) total += w[j];
        slot[D] = top;
        slot[D + 1] = total;
      }
      for (int64_t h = 0; h < group; ++h)
        weighted_sum(weights.data() + h * kAttentionChunk, values + task.first * D, n, D,
                     partial.data() + (i * group + h) * stride);
    }
  });
  for (int64_t r = 0; r < batch.rows; ++r) {
    const int64_t chunks = (batch.position(r) + kAttentionChunk) / kAttentionChunk;
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t g = h / group;
      const float* first = partial.data() + (batch.first_task[r * kv_heads + g] * group + h % group) * stride;
      float top = -std::numeric_limits<float>::infinity();
      for (int64_t c = 0; c < chunks; ++c) top = std::max(top, first[c * group * stride + D]);
      float* o = out + (r * heads + h) * D;
      std::fill(o, o + D, 0.f);
      float total = 0.f;
      for (int64_t c = 0; c < chunks; ++c) {
        const float* slot = first + c * group * stride;
        const float factor = std::exp(slot[D] - top);
        total += slot[D + 1] * factor;
        for (int64_t d = 0; d < D; ++d) o[d] += slot[d] * factor;
      }
      for (int64_t d = 0; d < D; ++d) o[d] /= total;
    }
  }
}

at::Tensor Decoder::forward(const at::Tensor& tokens, const std::vector<at::Tensor>& keys,
                               const std::vector<at::Tensor>& values, const std::vector<int64_t>& starts,
                               bool last_only) const {
  TORCH_CHECK(tokens.dim() == 2 && tokens.dtype() == at::kLong, "tokens: int64 [B, T]");
  const Batch batch(tokens.contiguous(), keys, values, starts, *this);
  const int64_t R = batch.rows, H = hidden, D = head_dim, width = (heads + 2 * kv_heads) * D;
  const int64_t vocab = embedding.size(0);
  std::vector<float> x(R * H), normed(R * H), delta(R * H), qkv(R * width), attended(R * heads * D);
  std::vector<float> gate_up, act, partial, routed;
  QuantizedRows quantized;

  const int64_t* ids = batch.tokens.data_ptr<int64_t>();
  for (int64_t r = 0; r < R; ++r) {
    TORCH_CHECK(ids[r] >= 0 && ids[r] < vocab, "token ", ids[r], " is outside the vocabulary");
    std::copy_n(embedding.data_ptr<float>() + ids[r] * H, H, x.data() + r * H);
  }
  for (int64_t l = 0; l < static_cast<int64_t>(layers.size()); ++l) {
    const DecoderLayer& layer = layers[l];
    for (int64_t r = 0; r < R; ++r) rms_norm(x.data() + r * H, data(layer.input_norm), eps, H, normed.data() + r * H);
    quantized.quantize(normed.data(), R, H);
    layer.qkv.multiply(quantized, qkv.data());
    for (int64_t r = 0; r < R; ++r) {
      float* row = qkv.data() + r * width;
      if (layer.q_norm.defined()) {
        for (int64_t h = 0; h < heads; ++h) rms_norm(row + h * D, data(layer.q_norm), eps, D, row + h * D);
        for (int64_t h = heads; h < heads + kv_heads; ++h) rms_norm(row + h * D, data(layer.k_norm), eps, D, row + h * D);
      }
      rotate(row, heads + kv_heads, batch.position(r));
      for (int64_t g = 0; g < kv_heads; ++g) {
        float* key = const_cast<float*>(batch.keys(r, l, g)) + batch.position(r) * D;
        float* value = const_cast<float*>(batch.values(r, l, g)) + batch.position(r) * D;
        std::copy_n(row + (heads + g) * D, D, key);
        std::copy_n(row + (heads + kv_heads + g) * D, D, value);
      }
    }
    attend(qkv.data(), batch, l, partial, attended.data());
    quantized.quantize(attended.data(), R, heads * D);
    layer.o.multiply(quantized, delta.data());
    add(x.data(), delta.data(), R * H);

    const int64_t I = layer.down.in_features;
    gate_up.resize(R * 2 * I);
    act.resize(R * I);
    for (int64_t r = 0; r < R; ++r) rms_norm(x.data() + r * H, data(layer.post_norm), eps, H, normed.data() + r * H);
    quantized.quantize(normed.data(), R, H);
    layer.gate_up.multiply(quantized, gate_up.data());
    for (int64_t r = 0; r < R; ++r) silu_times(gate_up.data() + r * 2 * I, gate_up.data() + r * 2 * I + I, I, act.data() + r * I);
    quantized.quantize(act.data(), R, I);
    layer.down.multiply(quantized, delta.data());
    if (layer.experts) {  // delta is the shared expert's; the routed experts' sum is added to it, as in PyTorch
      routed.resize(R * H);
      layer.experts->apply(normed.data(), R, routed.data());
      add(delta.data(), routed.data(), R * H);
    }
    add(x.data(), delta.data(), R * H);
  }

  const int64_t B = batch.tokens.size(0), T = batch.tokens.size(1), kept = last_only ? 1 : T;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < kept; ++t) {
      const int64_t r = b * T + (last_only ? T - 1 : t);
      rms_norm(x.data() + r * H, data(final_norm), eps, H, normed.data() + (b * kept + t) * H);
    }
  quantized.quantize(normed.data(), B * kept, H);
  auto logits = at::empty({B, kept, head.out_features}, at::TensorOptions().dtype(at::kFloat));
  head.multiply(quantized, logits.data_ptr<float>());
  return logits;
}

Batch::Batch(at::Tensor tokens_, const std::vector<at::Tensor>& keys_, const std::vector<at::Tensor>& values_,
             const std::vector<int64_t>& starts_, const Decoder& decoder)
    : tokens(std::move(tokens_)), starts(starts_), length(tokens.size(1)), rows(tokens.numel()),
      kv_heads(decoder.kv_heads), head_dim(decoder.head_dim) {
  const int64_t B = tokens.size(0);
  TORCH_CHECK(static_cast<int64_t>(keys_.size()) == B && static_cast<int64_t>(values_.size()) == B &&
                  static_cast<int64_t>(starts.size()) == B, "one cache and start per row");
  for (int64_t b = 0; b < B; ++b) {
    const at::Tensor& k = keys_[b];
    const at::Tensor& v = values_[b];
    TORCH_CHECK(k.dtype() == at::kFloat && k.is_contiguous() && v.dtype() == at::kFloat &&
                    v.is_contiguous() && k.sizes() == v.sizes() && k.dim() == 5 && k.size(1) == 1,
                "keys and values: contiguous fp32 [layers, 1, kv heads, positions, head dim]");
    TORCH_CHECK(k.size(0) >= static_cast<int64_t>(decoder.layers.size()) && k.size(2) == kv_heads &&
                    k.size(4) == head_dim, "the cache does not match the model");
    TORCH_CHECK(starts[b] >= 0 && starts[b] + length <= k.size(3), "positions ", starts[b], "..",
                starts[b] + length, " do not fit a cache of ", k.size(3));
    TORCH_CHECK(starts[b] + length <= decoder.cos.size(0), "positions beyond the rotary tables");
    capacity.push_back(k.size(3));
    key_data.push_back(k.data_ptr<float>());
    value_data.push_back(v.data_ptr<float>());
  }
  first_task.resize(rows * kv_heads);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t end = position(r) + 1;
    for (int64_t g = 0; g < kv_heads; ++g) {
      first_task[r * kv_heads + g] = static_cast<int64_t>(tasks.size());
      for (int64_t first = 0; first < end; first += kAttentionChunk)
        tasks.push_back({r, g, first, std::min(end, first + kAttentionChunk)});
    }
  }
}

}  // namespace clinidoc
