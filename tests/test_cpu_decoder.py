"""The compiled CPU decoder (engine/cpu_decoder.py, engine/kernels/decoder.cpp): the same logits as the PyTorch
pass on tiny random Llama, Qwen2 (biases), Qwen3 (QK-norm) and BailingMoeV2 (partial RoPE, QK-norm, a dense layer,
then routed and shared experts) checkpoints with int8 and int4 weights, past one attention chunk of context; rows
and drafts bitwise independent of what runs beside them; and which models and caches take it."""

from __future__ import annotations

import pytest
import torch

from engine import ChatMessage, GenerationParams, LocalEngine, Stats
from engine.kernels import cpu_kernels
from conftest import tiny_bailing_checkpoint
from test_engine import tiny_checkpoint

pytestmark = pytest.mark.skipif(cpu_kernels() is None, reason="the CPU kernels need AVX2 and a C++ compiler")

PROMPT = 150  # past decoder.cpp's 128-position attention chunk, so the chunks' softmaxes merge
STEPS = 40


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm()).item()


@pytest.fixture(scope="module")
def tiny_engines(tmp_path_factory, local_engine):
    """A loader of tiny random checkpoints with integer weights, each written and loaded once for the module."""
    directories, engines = {}, {}

    def load(kind: str, mode: str) -> LocalEngine:
        if kind not in directories:
            directories[kind] = tmp_path_factory.mktemp(kind)
            if kind == "bailing":
                tiny_bailing_checkpoint(directories[kind], local_engine)
            else:
                tiny_checkpoint(kind, directories[kind], local_engine.tokenizer)
        if (kind, mode) not in engines:
            engines[kind, mode] = LocalEngine(directories[kind], quantize=mode)
        return engines[kind, mode]

    return load


def _decode(engine: LocalEngine, ids: list[int], compiled: bool) -> torch.Tensor:
    """Logits of one-token steps after a prefill of ids[:PROMPT], through the compiled pass or PyTorch's."""
    model = engine.model
    kept, model.compiled = model.compiled, model.compiled if compiled else None
    try:
        cache = engine.new_cache(len(ids))
        engine.prefill(ids[:PROMPT], cache)
        return torch.stack([engine.forward([[t]], [cache], [PROMPT + i])[0] for i, t in enumerate(ids[PROMPT:])])
    finally:
        model.compiled = kept


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3", "bailing"])
def test_compiled_steps_match_the_pytorch_steps(kind, mode, tiny_engines):
    """Both passes quantize the same activations to int8 for the same kernels; what differs is the order of float
    sums, which leaves about 1e-7 relative and only rarely moves an activation across a rounding step."""
    engine = tiny_engines(kind, mode)
    assert engine.model.compiled is not None
    ids = torch.randint(0, engine.config.vocab_size, (PROMPT + STEPS,), generator=torch.Generator().manual_seed(3))
    compiled = _decode(engine, ids.tolist(), compiled=True)
    eager = _decode(engine, ids.tolist(), compiled=False)
    print(f"{kind} {mode}: compiled vs PyTorch logits, relative difference {_relative(compiled, eager):.1e}")
    assert _relative(compiled, eager) < 5e-3
    assert torch.equal(compiled.argmax(-1), eager.argmax(-1))


@pytest.mark.parametrize("kind", ["qwen3", "bailing"])
def test_rows_and_drafts_get_what_one_token_steps_get(kind, tiny_engines):
    """Two sequences at different positions, decoded as a batch of 3-token drafts, give bitwise the logits that
    each gets one token at a time alone: drafting is lossless and batching changes no answer. With experts, the
    rows of a batch choose different experts and share some."""
    engine = tiny_engines(kind, "int4")
    generator = torch.Generator().manual_seed(4)
    prompts = [torch.randint(0, 49152, (n,), generator=generator).tolist() for n in (PROMPT, 20)]
    drafts = [torch.randint(0, 49152, (3,), generator=generator).tolist() for _ in prompts]

    alone = []
    for prompt, draft in zip(prompts, drafts):
        cache = engine.new_cache(PROMPT + 3)
        engine.prefill(prompt, cache)
        alone.append(torch.stack([engine.forward([[t]], [cache], [len(prompt) + i])[0] for i, t in enumerate(draft)]))
    caches = [engine.new_cache(PROMPT + 3) for _ in prompts]
    for prompt, cache in zip(prompts, caches):
        engine.prefill(prompt, cache)
    batched = engine.forward(drafts, caches, [len(p) for p in prompts], last_only=False)
    assert torch.equal(batched, torch.stack(alone))


def test_smollm2_with_integer_weights_decodes_through_the_compiled_pass(local_engine, int4_engine):
    int4 = int4_engine
    assert local_engine.model.compiled is None  # fp32 weights stay with PyTorch's matmuls
    assert int4.model.compiled is not None
    prompt = [ChatMessage(role="user", content="List two common side effects of metformin.")]
    events = list(int4.generate(prompt, GenerationParams(max_new_tokens=24)))
    assert isinstance(events[-1], Stats) and events[-1].generated_tokens > 0
    assert "".join(event.text for event in events[:-1]).strip()


def test_a_narrow_kv_cache_runs_in_pytorch(tiny_engines):
    """FP8 keys and values are widened by engine/kv_cache.py; the compiled pass reads fp32 caches only."""
    engine = tiny_engines("llama", "int8")
    fp8 = LocalEngine(engine.checkpoint_path, quantize="int8", kv_dtype=torch.float8_e4m3fn)
    ids = torch.randint(0, 49152, (PROMPT + STEPS,), generator=torch.Generator().manual_seed(5)).tolist()
    tokens = torch.tensor([[ids[PROMPT]]])
    assert not fp8.model.compiled.takes(tokens, [fp8.new_cache(8)])
    assert _relative(_decode(fp8, ids, compiled=True), _decode(engine, ids, compiled=True)) < 0.05


def test_positions_past_the_cache_are_refused_with_the_numbers(tiny_engines):
    engine = tiny_engines("llama", "int4")
    cache = engine.new_cache(4)
    with pytest.raises(RuntimeError, match=r"positions 3\.\.5 do not fit a cache of 4"):
        engine.forward([[1, 2]], [cache], [3])
