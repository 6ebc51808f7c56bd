"""BailingMoeV2 against transformers' Glm4MoeForCausalLM, which implements the same router, shared experts,
partial rotary and QK-norm: a tiny random Glm4Moe is written out under BailingMoeV2's own tensor names
(q/k/v fused, experts split per expert) and both models must agree."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from engine import GenerationParams, LocalEngine, TextDelta
from engine.kv_cache import KVCache
from engine.layers import Step
from engine.models.bailing_moe_v2 import BailingMoeV2ForCausalLM
from engine.reference import add_random_mtp_layer, random_glm4_moe, save_as_bailing
from conftest import relative_error

TINY = dict(
    hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6,
    max_position_embeddings=512, n_routed_experts=16, num_experts_per_tok=4, n_group=4, topk_group=2,
    n_shared_experts=1, routed_scaling_factor=2.5, first_k_dense_replace=1,
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, local_engine):
    """(reference Glm4Moe, our engine on the converted checkpoint, its directory)."""
    directory = tmp_path_factory.mktemp("bailing")
    reference = random_glm4_moe(local_engine.config.vocab_size, eos_token_id=2, **TINY)
    save_as_bailing(reference, directory, shards=2)
    local_engine.tokenizer.hf.save_pretrained(directory)
    return reference, LocalEngine(directory), directory


def prompt_ids(engine: LocalEngine, n: int = 64) -> list[int]:
    text = "Medications: lisinopril 10 mg daily, metformin 500 mg twice daily, atorvastatin 20 mg nightly. " * 8
    ids = engine.tokenizer.encode(text)[:n]
    assert len(ids) == n
    return ids


def capture_routes(model, gate_modules) -> list:
    routes = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: routes.append(out[-1].sort(-1).values)) for m in gate_modules]
    return routes, hooks


def test_engine_builds_bailing_architecture(pair):
    _, engine, _ = pair
    assert isinstance(engine.model, BailingMoeV2ForCausalLM)
    assert engine.info.architecture == "BailingMoeV2ForCausalLM"
    assert engine.model.model.layers[0].mlp.__class__.__name__ == "GatedMLP"
    assert engine.model.model.layers[1].mlp.gate.expert_bias.dtype == torch.float32


def test_same_experts_and_logits_as_glm4_moe(pair):
    reference, engine, _ = pair
    ids = prompt_ids(engine)
    ref_routes, ref_hooks = capture_routes(reference, [l.mlp.gate for l in reference.model.layers[1:]])
    our_routes, our_hooks = capture_routes(engine.model, [l.mlp.gate for l in engine.model.model.layers[1:]])
    cfg = engine.config
    cache = KVCache(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, len(ids), torch.float32)
    with torch.inference_mode():
        theirs = reference(torch.tensor([ids])).logits[0]
        ours = engine.model(torch.tensor([ids]), [cache], [0])[0]
    for h in ref_hooks + our_hooks:
        h.remove()
    assert len(ref_routes) == len(our_routes) == TINY["num_hidden_layers"] - 1
    for layer, (a, b) in enumerate(zip(ref_routes, our_routes)):
        assert torch.equal(a, b), f"routed experts differ in MoE layer {layer + 1}"
    assert relative_error(ours, theirs) < 5e-5


def test_the_bias_changes_selection_but_not_weights(pair):
    _, engine, _ = pair
    router = engine.model.model.layers[1].mlp.gate
    x = torch.randn(32, TINY["hidden_size"])
    with torch.inference_mode():
        weights, ids = router(x)
        scores = torch.sigmoid(x @ router.weight.T)
        expected = scores.gather(1, ids)
        expected = expected / expected.sum(-1, keepdim=True) * TINY["routed_scaling_factor"]
    assert torch.allclose(weights, expected, atol=1e-6)
    # Every chosen expert lies in one of the topk_group groups kept.
    groups = ids // (TINY["n_routed_experts"] // TINY["n_group"])
    assert all(len(set(row.tolist())) <= TINY["topk_group"] for row in groups)


def test_greedy_32_tokens_match_glm4_moe(pair):
    reference, engine, _ = pair
    ids = prompt_ids(engine, 20)
    with torch.inference_mode():
        out = reference.generate(
            torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=32, min_new_tokens=32, do_sample=False,
        )
    expected = engine.tokenizer.decode(out[0, len(ids):].tolist())
    events = list(engine.generate(ids, GenerationParams(max_new_tokens=32, ignore_eos=True)))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == expected
    assert events[-1].generated_tokens == 32


def test_missing_expert_is_refused(tmp_path, pair):
    from safetensors.torch import load_file, save_file

    from engine import EngineError

    _, _, directory = pair
    tensors = {}
    for f in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(f))
    del tensors["model.layers.2.mlp.experts.7.up_proj.weight"]
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    with pytest.raises(EngineError, match="experts"):
        LocalEngine(tmp_path)


def test_mtp_layer_loads_and_drafts_by_the_formula(tmp_path, pair):
    """The MTP layer (model.layers.{L}) is found by its weights; draft_next follows the spec:
    final_layernorm(layer(eh_proj([enorm(embed(next token)), hnorm(hidden)]))) through the shared lm_head,
    with its own KV slot."""
    from engine.layers import RMSNorm

    _, _, directory = pair
    shutil.copytree(directory, tmp_path, dirs_exist_ok=True)
    add_random_mtp_layer(tmp_path)  # the config itself says nothing of MTP
    engine = LocalEngine(tmp_path)
    cfg = engine.config
    assert engine.config.mtp_layers == 1

    m, L = engine.model, cfg.num_hidden_layers
    ids = prompt_ids(engine, 12)
    cache = KVCache(L + 1, cfg.num_key_value_heads, cfg.head_dim, 32, torch.float32)
    positions = torch.arange(len(ids) - 1)
    with torch.inference_mode():
        hidden, _ = m.hidden(torch.tensor([ids[:-1]]), [cache], [0])
        main_keys = cache.keys[:L].clone()
        next_tokens = torch.tensor([ids[1:]])
        logits, state_out = m.draft_next(hidden, next_tokens, [cache], [0])

        mtp = m.model.layers[L]
        u = mtp.eh_proj(torch.cat([mtp.enorm(m.model.word_embeddings(next_tokens)), mtp.hnorm(hidden)], -1))
        fresh = KVCache(L + 1, cfg.num_key_value_heads, cfg.head_dim, 32, torch.float32)
        step = Step([fresh], [0], len(positions), u.device)
        rotate = m.rope.at(step.positions, u.dtype, cfg.head_dim)
        r = u + mtp.attention(mtp.input_layernorm(u), rotate, step, L)
        r = r + mtp.mlp(mtp.post_attention_layernorm(r))
        expected_state = mtp.final_layernorm(r)
    assert isinstance(mtp.enorm, RMSNorm)
    assert relative_error(state_out, expected_state) < 1e-5
    assert relative_error(logits, m.lm_head(expected_state).float()) < 1e-5
    assert torch.equal(cache.keys[:L], main_keys), "the MTP step must write only its own KV slot"
    assert cache.keys[L, :, :, : len(positions)].abs().sum() > 0


def test_ling_chat_template_is_used_when_the_tokenizer_has_none(pair):
    from engine import ChatMessage

    _, _, directory = pair
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "chat_template.jinja").unlink(missing_ok=True)
    (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 7]}))
    engine = LocalEngine(directory)
    conversation = [
        ChatMessage(role="system", content="You are a helpful assistant"),
        ChatMessage(role="user", content="Hello"),
        ChatMessage(role="assistant", content="Hi there"),
        ChatMessage(role="user", content="How are you?"),
    ]
    # The rendering llama.cpp prints for its built-in `bailing2` template.
    assert engine.tokenizer.render_chat(conversation) == (
        "<role>SYSTEM</role>You are a helpful assistant\ndetailed thinking off<|role_end|>"
        "<role>HUMAN</role>Hello<|role_end|><role>ASSISTANT</role>Hi there<|role_end|>"
        "<role>HUMAN</role>How are you?<|role_end|><role>ASSISTANT</role>"
    )
    assert engine.tokenizer.render_chat(conversation[1:2]) == (
        "<role>SYSTEM</role>detailed thinking off<|role_end|><role>HUMAN</role>Hello<|role_end|><role>ASSISTANT</role>"
    )
    assert {2, 7} <= engine.tokenizer.eos_ids


FP8_QUANTIZED = re.compile(
    r".*\.(attention\.query_key_value|attention\.dense|mlp\.(gate|up|down)_proj|"
    r"mlp\.shared_experts\.\w+_proj|mlp\.experts\.\d+\.\w+_proj)\.weight"
)


def _write_fp8_copy(directory, target, engine: LocalEngine) -> None:
    """The checkpoint in `directory` as Ling's FP8 format in `target`."""
    from safetensors.torch import load_file, save_file

    from engine.fp8 import quantize_block_fp8

    tensors = {}
    for f in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(f))
    quantized = {}
    for name, t in tensors.items():
        if FP8_QUANTIZED.fullmatch(name):
            quantized[name], quantized[name + "_scale_inv"] = quantize_block_fp8(t)
        else:
            quantized[name] = t
    save_file(quantized, target / "model.safetensors")
    config = json.loads((directory / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                     "weight_block_size": [128, 128]}
    (target / "config.json").write_text(json.dumps(config))
    engine.tokenizer.hf.save_pretrained(target)


def test_fp8_checkpoint_loads_and_stays_close(tmp_path, pair):
    """A checkpoint in the Ling FP8 format (block e4m3 + weight_scale_inv for the projections the spec lists;
    embeddings, lm_head, router and norms full precision) runs with 1-byte weights and logits near the original."""
    from engine.fp8 import FP8
    from engine.weights import resident_bytes

    reference, engine, directory = pair
    _write_fp8_copy(directory, tmp_path, engine)

    fp8_engine = LocalEngine(tmp_path)
    layer = fp8_engine.model.model.layers[1]
    assert layer.mlp.experts.gate_proj.dtype == FP8
    assert layer.attention.query_key_value.weight.dtype == FP8
    assert layer.mlp.gate.weight.dtype == torch.float32 and fp8_engine.model.lm_head.weight.dtype == torch.float32
    assert "FP8" in fp8_engine.info.precision

    # Quantizing the full-precision checkpoint while loading gives the same model.
    on_the_fly = LocalEngine(directory, quantize="fp8")
    ids = prompt_ids(engine, 32)
    cfg = engine.config

    def logits(e):
        cache = KVCache(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, len(ids), torch.float32)
        with torch.inference_mode():
            return e.model(torch.tensor([ids]), [cache], [0])[0]

    full, fp8, fly = logits(engine), logits(fp8_engine), logits(on_the_fly)
    assert torch.equal(fp8, fly)
    relative = ((fp8 - full).norm() / full.norm()).item()
    print(f"tiny BailingMoeV2 FP8 vs fp32: relative logit error {relative:.4f}, "
          f"max abs {(fp8 - full).abs().max().item():.4f}, "
          f"weights {resident_bytes(fp8_engine.model)} vs {resident_bytes(engine.model)} bytes")
    # e4m3 keeps 3 mantissa bits: each projection is ~2.5% off, this random model chains a dozen of them, and
    # a perturbed input can flip which experts the router picks.
    assert relative < 0.15
    experts = layer.mlp.experts
    assert experts.gate_proj.nbytes == experts.gate_proj.numel()  # one byte per expert weight


def test_bf16_experts_stay_close_in_prefill_and_decode(pair):
    """Stacked experts held in bf16: a long prefill upcasts them, one-token steps multiply in bf16."""
    _, engine, directory = pair
    half = LocalEngine(directory, quantize="bf16")
    assert half.model.model.layers[1].mlp.experts.gate_proj.dtype == torch.bfloat16
    ids = prompt_ids(engine, 40)
    cfg = engine.config

    def cache():
        return KVCache(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, len(ids), torch.float32)

    with torch.inference_mode():
        full = engine.model(torch.tensor([ids]), [cache()], [0])[0]
        prefill = half.model(torch.tensor([ids]), [cache()], [0])[0]
        stepwise = cache()
        steps = torch.cat([half.model(torch.tensor([[t]]), [stepwise], [i])[0] for i, t in enumerate(ids)])
    for got in (prefill, steps):
        assert ((got - full).norm() / full.norm()).item() < 0.03


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_integer_experts_stay_close_and_load_from_fp8_too(tmp_path, pair, mode):
    """Experts quantized at load to int8/int4, from the full-precision checkpoint and from its FP8 copy (dequantized on
    the way in): logits near fp32's in a prefill (PyTorch, the chosen experts dequantized) and in one-token steps
    (the compiled pass, experts read as integers)."""
    _, engine, directory = pair
    _write_fp8_copy(directory, tmp_path, engine)
    ids = prompt_ids(engine, 40)
    cfg = engine.config

    def logits(e: LocalEngine) -> tuple[torch.Tensor, torch.Tensor]:
        def cache():
            return KVCache(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, len(ids), torch.float32)

        with torch.inference_mode():
            prefill = e.model(torch.tensor([ids]), [cache()], [0])[0]
            stepwise = cache()
            steps = torch.cat([e.model(torch.tensor([[t]]), [stepwise], [i])[0] for i, t in enumerate(ids)])
        return prefill, steps

    # Each is measured against its own source's weights: the FP8 copy is already a rounding of the original.
    for source, reference in ((directory, engine), (tmp_path, LocalEngine(tmp_path))):
        full, _ = logits(reference)
        integer = LocalEngine(source, quantize=mode)
        experts = integer.model.model.layers[1].mlp.experts
        assert experts.integer == mode and not integer.config.fp8 and integer.model.compiled is not None
        for got in logits(integer):
            error = relative_error(got, full)
            agreement = (got.argmax(-1) == full.argmax(-1)).float().mean().item()
            print(f"{source.name} {mode}: relative logit error {error:.4f}, top-1 agreement {agreement:.2f}")
            # Each format's own rounding on random weights (int4: ~8% per matmul, int8: ~0.5%), chained through the
            # layers; the steps add the kernels' int8 activations, and a perturbed input can flip which experts the
            # router picks, which on these random weights moves int8's logits by 0.04 to 0.24 as its rounding falls.
            assert error < {"int8": 0.3, "int4": 0.6}[mode]
