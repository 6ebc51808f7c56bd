// A decoder's forward pass of a few tokens in one call, over int8/int4 weights and an fp32 KV cache: the Llama
// family, and BailingMoeV2 with its routed experts.
#pragma once

#include "int_matmul.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace clinidoc {

// Positions per attention task: long contexts are split so that both cores share each head's keys; the split
// depends only on the position, never on the number of threads, so the sums come out the same on any machine.
constexpr int64_t kAttentionChunk = 128;

// A MoE layer's routed experts, as engine/moe.py holds them: a sigmoid router whose bias steers only which experts
// are chosen, from the `top_groups` groups whose two best biased scores sum highest, and each expert's gate, up and
// down projections (slices of the layer's stacked int8/int4 tensors, not copies).
struct RoutedExperts {
  at::Tensor router, bias;  // fp32 [experts, hidden], [experts]
  std::vector<IntWeight> gate, up, down;
  int64_t top_k, groups, top_groups;
  bool normalize;
  float scaling;

  RoutedExperts(at::Tensor router, at::Tensor bias, std::vector<IntWeight> gate, std::vector<IntWeight> up,
                std::vector<IntWeight> down, int64_t top_k, int64_t groups, int64_t top_groups, bool normalize,
                double scaling);

  // out [rows, hidden] = Σ weight · expert(x) over each row's chosen experts. Only the chosen experts' weights are
  // read, once for all the rows that chose them; each row is summed over its own experts in its own order, so it
  // comes out the same whatever rows are beside it.
  void apply(const float* x, int64_t rows, float* out) const;

 private:
  // One row's chosen experts (best first) and their weights.
  void route(const float* x, int64_t* ids, float* weights) const;
};

// One decoder layer's weights (q/k/v and gate/up fused). In a MoE layer gate_up and down are the shared expert's,
// and `experts` the routed ones.
struct DecoderLayer {
  at::Tensor input_norm, post_norm, q_norm, k_norm;  // q_norm, k_norm: undefined without QK-norm
  IntWeight qkv, o, gate_up, down;
  std::optional<RoutedExperts> experts;

  DecoderLayer(at::Tensor input_norm, at::Tensor post_norm, c10::optional<at::Tensor> q_norm,
               c10::optional<at::Tensor> k_norm, IntWeight qkv, IntWeight o, IntWeight gate_up, IntWeight down,
               std::optional<RoutedExperts> experts);
};

class Decoder;

// Where one call's tokens go: row b of tokens [B, T] continues the sequence cached in keys[b] / values[b]
// ([layers, 1, kv heads, positions, head dim], engine/kv_cache.py) from position starts[b].
struct Batch {
  at::Tensor tokens;
  std::vector<int64_t> starts, capacity;
  std::vector<float*> key_data, value_data;
  int64_t length, rows, kv_heads, head_dim;
  // Attention's tasks, the same for every layer: each (token, KV head, chunk of its positions), and the first
  // task of each (token, KV head).
  struct AttentionTask {
    int64_t row, kv_head, first, last;
  };
  std::vector<AttentionTask> tasks;
  std::vector<int64_t> first_task;

  Batch(at::Tensor tokens, const std::vector<at::Tensor>& keys, const std::vector<at::Tensor>& values,
        const std::vector<int64_t>& starts, const Decoder& decoder);

  // Token r of the flattened [B * T] rows: its position, and the first cached key or value of a layer and KV head.
  int64_t position(int64_t r) const { return starts[r / length] + r % length; }
  float* keys(int64_t r, int64_t layer, int64_t kv_head) const { return at(key_data, r, layer, kv_head); }
  float* values(int64_t r, int64_t layer, int64_t kv_head) const { return at(value_data, r, layer, kv_head); }

 private:
  float* at(const std::vector<float*>& data, int64_t r, int64_t layer, int64_t kv_head) const {
    const int64_t b = r / length;
    return data[b] + (layer * kv_heads + kv_head) * capacity[b] * head_dim;
  }
};

class Decoder {
 public:
  Decoder(at::Tensor embedding, std::vector<DecoderLayer> layers, at::Tensor final_norm, IntWeight head,
          at::Tensor cos, at::Tensor signed_sin, int64_t heads, int64_t kv_heads, int64_t head_dim, double eps);

  // fp32 logits [B, T, vocab] (or [B, 1, vocab] with last_only) of tokens [B, T]; writes their keys and values.
  at::Tensor forward(const at::Tensor& tokens, const std::vector<at::Tensor>& keys,
                        const std::vector<at::Tensor>& values, const std::vector<int64_t>& starts,
                        bool last_only) const;

  at::Tensor embedding;
  std::vector<DecoderLayer> layers;
  at::Tensor final_norm;
  IntWeight head;
  at::Tensor cos, signed_sin;  // [positions, rotary dims], signed_sin negated on the first half
  int64_t heads, kv_heads, head_dim, hidden = 0, rotary_dim = 0;
  float eps;

 private:
  void rotate(float* x, int64_t count, int64_t position) const;
  // partial: scratch for the tasks' partial sums, reused from layer to layer.
  void attend(const float* qkv, const Batch& batch, int64_t layer, std::vector<float>& partial, float* out) const;
};

}  // namespace clinidoc
