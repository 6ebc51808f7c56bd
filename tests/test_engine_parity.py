"""The engine against transformers on the same SmolLM2 weights: logits and greedy text must agree."""

from __future__ import annotations

import pytest
import torch

from engine import GenerationParams, LocalEngine, TextDelta
from engine.kv_cache import KVCache
from conftest import relative_error

PROMPTS = [
    "The patient was admitted with chest pain and",
    "List three common side effects of metformin:",
    "Discharge summary: a 67-year-old woman after right total knee replacement",
]


@pytest.fixture(scope="module")
def reference(local_engine: LocalEngine):
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    path = local_engine.checkpoint_path
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    assert isinstance(model, LlamaForCausalLM)
    return model.eval()


def engine_logits(engine: LocalEngine, ids: list[int]) -> torch.Tensor:
    cfg = engine.config
    cache = KVCache(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, len(ids), torch.float32)
    with torch.inference_mode():
        return engine.model(torch.tensor([ids]), [cache], [0])[0]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_logits_match_transformers(local_engine, reference, prompt):
    ids = local_engine.tokenizer.encode(prompt)
    with torch.inference_mode():
        expected = reference(torch.tensor([ids])).logits[0].float()
    diff = relative_error(engine_logits(local_engine, ids), expected)
    assert diff < 1e-4, f"logit difference {diff} of the largest logit"


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_32_tokens_match_transformers(local_engine, reference, prompt):
    ids = local_engine.tokenizer.encode(prompt)
    with torch.inference_mode():
        out = reference.generate(
            torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=32, do_sample=False, eos_token_id=list(local_engine.tokenizer.eos_ids),
        )
    new = out[0, len(ids):].tolist()
    expected_text = local_engine.tokenizer.decode(new)

    events = list(local_engine.generate(ids, GenerationParams(max_new_tokens=32)))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == expected_text
    assert events[-1].generated_tokens == len(new)
