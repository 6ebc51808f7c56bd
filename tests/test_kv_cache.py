"""KV storage narrower than the arithmetic: FP8 e4m3 with a scale per token and head, and bf16."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from engine import ChatMessage, GenerationParams, LocalEngine, Stats
from engine.kv_cache import READ_BLOCK, KVCache, quantize_fp8
from engine.layers import cached_attention
from engine.prefix_cache import PrefixCache
from conftest import relative_error

FP8 = torch.float8_e4m3fn


def _fp8_cache(layers: int = 2, kv_heads: int = 2, head_dim: int = 64, max_tokens: int = 64) -> KVCache:
    return KVCache(layers, kv_heads, head_dim, max_tokens, torch.float32, storage_dtype=FP8)


def test_fp8_round_trip_is_within_e4m3_rounding_of_each_vector():
    torch.manual_seed(0)
    # Tokens of very different magnitudes, far beyond e4m3's 448 and far below its smallest normal, and a zero one.
    magnitudes = torch.tensor([1e-4, 0.02, 1.0, 30.0, 1e4, 0.0]).repeat(3)
    k = torch.randn(1, 2, len(magnitudes), 64) * magnitudes[:, None]
    v = torch.randn(1, 2, len(magnitudes), 64) * magnitudes.flip(0)[:, None]
    keys, values = _fp8_cache().update(0, 0, k, v)
    for x, widened in ((k, keys), (v, values)):
        assert torch.isfinite(widened).all()
        amax = x.abs().amax(-1, keepdim=True)
        # Three mantissa bits: half a step is 2**-4 of the value; plus the bf16 rounding of the scale at the top.
        assert ((widened - x).abs() <= x.abs() * 2**-4 + amax * 2**-8).all()
        assert (widened - x).abs().max() > 0  # it is quantized, not kept
    assert (keys[:, :, magnitudes == 0] == 0).all()


def test_widening_every_e4m3_code_equals_torchs_own_cast():
    """The fp16 bit trick, on all finite codes (both signs, subnormals, the largest) and a non-unit scale."""
    finite = [b for b in range(256) if b & 0x7F != 0x7F]  # 0x7F and 0xFF are NaN
    codes = torch.tensor(finite, dtype=torch.uint8).view(FP8)
    reversed_codes = torch.tensor(finite[::-1], dtype=torch.uint8).view(FP8)
    cache = _fp8_cache(layers=1, kv_heads=1, head_dim=len(codes), max_tokens=2)
    cache.keys[0, 0, 0, 0] = codes
    cache.values[0, 0, 0, 0] = reversed_codes
    cache.key_scales[0, 0, 0, 0] = 0.375
    cache.value_scales[0, 0, 0, 0] = 2.0**-20
    keys, values = cache.update(0, 1, torch.ones(1, 1, 1, len(codes)), torch.ones(1, 1, 1, len(codes)))
    assert torch.equal(keys[0, 0, 0], codes.float() * 0.375)
    assert torch.equal(values[0, 0, 0], reversed_codes.float() * 2.0**-20)
    assert torch.equal(keys[0, 0, 1], torch.ones(len(codes)) * 448 * cache.key_scales[0, 0, 0, 1].float())


def test_a_long_fp8_read_is_widened_block_by_block_into_the_right_positions():
    torch.manual_seed(3)
    n = 100_000  # three CPU blocks of 32768 positions, and part of a fourth
    cache = KVCache(1, 2, 8, n, torch.float32, storage_dtype=FP8)
    k, v = torch.randn(1, 2, n, 8) * torch.rand(n, 1) * 100, torch.randn(1, 2, n, 8)
    keys, values = cache.update(0, 0, k, v)
    for x, widened in ((k, keys), (v, values)):
        q, scale = quantize_fp8(x)
        assert torch.equal(widened, q.float() * scale.float())


def _attend(cache: KVCache, chunks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """A prefill chunk, a chunk after it and decode steps, through both layers of `cache` (the second with negated
    keys and values: layers share the read buffers, and must not see each other's)."""
    outs, start = [], 0
    for q, k, v in chunks:
        outs += [cached_attention(q, sign * k, sign * v, cache, layer, start) for layer, sign in enumerate((1, -1))]
        start += q.shape[2]
    return torch.cat(outs, dim=1)


def _random_chunks(lengths=(40, 8, 1, 1)) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    torch.manual_seed(1)
    return [(torch.randn(1, 6, t, 64), 2 * torch.randn(1, 2, t, 64), torch.randn(1, 2, t, 64)) for t in lengths]


def test_attention_over_an_fp8_cache_is_attention_over_the_dequantized_keys_and_values():
    chunks = _random_chunks()
    full = _attend(KVCache(2, 2, 64, 64, torch.float32), chunks)
    fp8 = _attend(_fp8_cache(), chunks)
    assert (fp8 - full).norm() / full.norm() < 0.08  # measured 0.04: random keys make a sharp softmax

    exact = _attend(KVCache(2, 2, 64, 64, torch.float32), [(q, _dequantized(k), _dequantized(v)) for q, k, v in chunks])
    assert relative_error(fp8, exact) < 1e-5


def _dequantized(x: torch.Tensor) -> torch.Tensor:
    q, scale = quantize_fp8(x)
    return q.float() * scale.float()


def test_attention_after_a_narrow_prefix_longer_than_a_block_equals_attention_over_all_of_it():
    """Past READ_BLOCK positions an fp8 cache is attended a block at a time; the merged softmax is the whole one."""
    torch.manual_seed(4)
    prefix = READ_BLOCK + READ_BLOCK // 2 + 3
    cache = KVCache(1, 2, 16, prefix + 9, torch.float32, storage_dtype=FP8)
    cache.write(0, 0, torch.randn(1, 2, prefix, 16) * 3, torch.randn(1, 2, prefix, 16))
    stored = [_dequantized(x) for x in cache.read(0, 0, prefix)]
    for start, t in ((prefix, 8), (prefix + 8, 1)):  # a chunk after the prefix, then a decode step
        q, k, v = torch.randn(1, 6, t, 16), torch.randn(1, 2, t, 16), torch.randn(1, 2, t, 16)
        out = cached_attention(q, k, v, cache, 0, start)
        stored = [torch.cat([s, _dequantized(x)], 2) for s, x in zip(stored, (k, v))]
        visible = torch.arange(start + t)[None, :] <= torch.arange(start, start + t)[:, None]
        expected = F.scaled_dot_product_attention(q, *stored, attn_mask=visible, enable_gqa=True)
        assert relative_error(out, expected.transpose(1, 2).reshape(1, t, -1)) < 1e-5


def test_attending_a_long_narrow_cache_widens_one_block_not_the_context():
    """The working set of a long prefill stays fixed: a whole layer of this cache widened to fp32 would be 128 MiB,
    a block of READ_BLOCK positions is 32 MiB. Measured in a process of its own, whose heap holds no memory that
    earlier tests freed, from Linux's resident high-water mark reset before the read."""
    script = f"""
import torch
from bench.serving import reset_peak_rss, rss_and_peak
from engine.kv_cache import KVCache
from engine.layers import cached_attention

context = {4 * READ_BLOCK}
cache = KVCache(1, 2, 256, context + 1, torch.float32, storage_dtype=torch.float8_e4m3fn)
cache.write(0, 0, torch.randn(1, 2, context, 256), torch.randn(1, 2, context, 256))
q, k, v = torch.randn(1, 4, 1, 256), torch.randn(1, 2, 1, 256), torch.randn(1, 2, 1, 256)
reset_peak_rss()
before, _ = rss_and_peak()
cached_attention(q, k, v, cache, 0, context)
print((rss_and_peak()[1] - before) / 2**20)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    grown_mib = float(run.stdout)
    print(f"resident growth of a one-token read over {4 * READ_BLOCK} fp8 positions: {grown_mib:.1f} MiB")
    assert grown_mib < 64


def test_bf16_storage_returns_the_bf16_rounding():
    chunks = _random_chunks((5, 1))
    cache = KVCache(2, 2, 64, 8, torch.float32, storage_dtype=torch.bfloat16)
    (_, k0, v0), (_, k1, v1) = chunks
    cache.update(0, 0, k0, v0)
    keys, values = cache.update(0, 5, k1, v1)
    assert keys.dtype == torch.float32
    assert torch.equal(keys, torch.cat([k0, k1], 2).bfloat16().float())
    assert torch.equal(values, torch.cat([v0, v1], 2).bfloat16().float())


def test_storage_that_could_overflow_is_refused():
    with pytest.raises(ValueError):
        KVCache(1, 1, 8, 8, torch.float32, storage_dtype=torch.float16)


def test_fp8_cache_bytes_are_about_half_of_bf16_and_a_quarter_of_fp32():
    shape = dict(layers=30, kv_heads=3, head_dim=64, max_tokens=100)  # SmolLM2-135M
    fp32 = KVCache(**shape, dtype=torch.float32).nbytes
    bf16 = KVCache(**shape, dtype=torch.float32, storage_dtype=torch.bfloat16).nbytes
    fp8 = KVCache(**shape, dtype=torch.float32, storage_dtype=FP8).nbytes
    # Per token and layer: keys and values, 3 heads of 64 e4m3 bytes and one 2-byte scale each.
    assert fp8 == 100 * 30 * 2 * 3 * (64 + 2)
    assert bf16 == fp32 // 2
    assert 0.5 < fp8 / bf16 < 0.52 and 0.25 < fp8 / fp32 < 0.26


def test_prefix_cache_keeps_and_restores_fp8_keys_values_and_scales():
    torch.manual_seed(2)
    source = _fp8_cache()
    tokens = list(range(10, 30))
    for layer in range(2):
        source.update(layer, 0, torch.randn(1, 2, len(tokens), 64) * 50, torch.randn(1, 2, len(tokens), 64))
    prefixes = PrefixCache(budget_bytes=1 << 20)
    prefixes.store(tokens, source)
    assert prefixes.nbytes == len(tokens) * 2 * 2 * 2 * (64 + 2)  # true bytes: e4m3 values and bf16 scales

    target = _fp8_cache()
    assert prefixes.restore([*tokens[:12], 99, 98], target) == 12
    for restored, original in zip(target.stored, source.stored):
        assert torch.equal(restored[:, :, :, :12].view(torch.uint8), original[:, :, :, :12].view(torch.uint8))
        assert not restored[:, :, :, 12:].view(torch.uint8).any()
    # A decode step after the restored prefix reads what the original cache would have given.
    q, k, v = torch.randn(1, 6, 1, 64), torch.randn(1, 2, 1, 64), torch.randn(1, 2, 1, 64)
    expected = cached_attention(q, k, v, source, 0, 12)
    assert torch.equal(cached_attention(q, k, v, target, 0, 12), expected)


def test_tiny_llama_logits_with_an_fp8_cache_stay_close_to_a_full_precision_cache(tmp_path, local_engine):
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(local_engine.tokenizer.hf), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path)
    local_engine.tokenizer.hf.save_pretrained(tmp_path)
    engine = LocalEngine(tmp_path)
    ids = local_engine.tokenizer.encode("Allergies: penicillin (rash). Medications: lisinopril 10 mg daily, aspirin.")

    def logits(storage: torch.dtype) -> torch.Tensor:
        """A prefill of all but the last 4 tokens, then one decode step each."""
        cache = KVCache(2, 2, 32, len(ids), torch.float32, storage_dtype=storage)
        split = len(ids) - 4
        with torch.inference_mode():
            steps = [engine.model(torch.tensor([ids[:split]]), [cache], [0])[0]]
            steps += [engine.model(torch.tensor([[ids[p]]]), [cache], [p])[0] for p in range(split, len(ids))]
        return torch.cat(steps)

    full, fp8 = logits(torch.float32), logits(FP8)
    # Measured 0.024 (bf16 storage: 0.0016, the 16x of four fewer mantissa bits).
    assert (fp8 - full).norm() / (full - full.mean(-1, keepdim=True)).norm() < 0.05
    assert (fp8.argmax(-1) == full.argmax(-1)).float().mean() > 0.9
    assert not torch.equal(fp8, full)


def test_an_engine_with_an_fp8_kv_cache_reads_a_prompt_like_the_full_one(local_engine):
    fp8 = LocalEngine(kv_dtype=torch.float8_e4m3fn)
    ids = local_engine.tokenizer.encode_chat([ChatMessage(role="user", content="What is hypertension? " * 20)])
    full = local_engine.prefill(ids, local_engine.new_cache(len(ids)))
    narrow = fp8.prefill(ids, fp8.new_cache(len(ids)))
    assert fp8.new_cache(100).nbytes < 0.3 * local_engine.new_cache(100).nbytes  # fp32 compute: about a quarter
    assert ((narrow - full).norm() / full.norm()).item() < 0.15
    assert narrow.argmax() == full.argmax()
    stats = list(fp8.generate(ids, GenerationParams(max_new_tokens=8, ignore_eos=True)))[-1]
    assert isinstance(stats, Stats) and stats.generated_tokens == 8
