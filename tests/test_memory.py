"""engine.memory: the plan made before loading agrees with what loading takes, and a model that cannot fit is
refused with the numbers and the context that would fit, before any weight is read."""

from pathlib import Path

import pytest
import torch

from engine import EngineError, LocalEngine
from engine.checkpoint import Checkpoint, default_model_path
from engine.kv_cache import KVCache
from engine.memory import GIB, MemoryPlan, kv_bytes_per_token, plan_memory, weight_bytes
from conftest import tiny_bailing_checkpoint


def loaded_bytes(engine: LocalEngine) -> int:
    tensors = list(engine.model.parameters()) + list(engine.model.buffers())
    # A tied head shares the embedding's storage: each storage once.
    seen = {tensor.untyped_storage().data_ptr(): tensor.untyped_storage().nbytes() for tensor in tensors}
    return sum(seen.values())


@pytest.mark.parametrize("quantize", [None, "int4"])
def test_planned_weights_are_what_loading_takes(
    quantize: str | None, local_engine: LocalEngine, int4_engine: LocalEngine
) -> None:
    engine = local_engine if quantize is None else int4_engine
    checkpoint = Checkpoint(default_model_path())
    planned = weight_bytes(checkpoint.tensor_shapes(), torch.float32, quantize)
    assert engine.memory.weight_bytes == planned
    assert planned == pytest.approx(loaded_bytes(engine), rel=0.1)


@pytest.mark.parametrize("kv_dtype", [torch.float32, torch.bfloat16, torch.float8_e4m3fn])
def test_planned_kv_per_token_is_what_the_cache_holds(kv_dtype: torch.dtype, local_engine: LocalEngine) -> None:
    config = local_engine.config
    tokens = 64
    cache = KVCache(config.num_hidden_layers, config.num_key_value_heads, config.head_dim, tokens, torch.float32,
                    storage_dtype=kv_dtype)
    assert kv_bytes_per_token(config, kv_dtype) * tokens == cache.nbytes


def test_the_prefix_cache_gets_a_share_of_what_the_model_leaves_free(local_engine: LocalEngine) -> None:
    plan = local_engine.memory
    assert plan.fits and plan.context == local_engine.context_window
    assert local_engine.prefix_cache.budget_bytes == plan.prefix_cache_bytes
    assert 0 < plan.prefix_cache_bytes < plan.available_bytes - plan.needed_bytes


def test_a_plan_that_does_not_fit_says_what_would() -> None:
    plan = MemoryPlan(device="cpu", weight_bytes=40 * GIB, kv_bytes_per_token=100_000, context=131_072,
                      working_bytes=GIB, available_bytes=48 * GIB)
    assert not plan.fits
    # 7 GiB left for keys and values at 100,000 bytes a token.
    assert plan.context_that_fits == 7 * GIB // 100_000 // 1024 * 1024
    message = plan.refusal("AntAngelMed")
    assert "AntAngelMed does not fit in the 48.0 GiB free on cpu" in message
    assert "weights take 40.0 GiB" in message and "100,000 bytes a token" in message
    assert f"--context {plan.context_that_fits}" in message
    too_big = plan.model_copy(update={"weight_bytes": 60 * GIB})
    assert too_big.context_that_fits == 0 and "--quantize int4" in too_big.refusal("AntAngelMed")


def test_a_model_whose_context_cannot_fit_is_refused_before_loading(tmp_path: Path, local_engine: LocalEngine) -> None:
    checkpoint = Checkpoint(tiny_bailing_checkpoint(tmp_path, local_engine))
    plan = plan_memory(checkpoint.config, checkpoint.tensor_shapes(), torch.float32, None, torch.device("cpu"), 2048)
    # A context whose keys and values alone are twice the free memory.
    context = 2 * plan.available_bytes // plan.kv_bytes_per_token
    with pytest.raises(EngineError, match=r"does not fit in the .* GiB free on cpu.*--context \d+"):
        LocalEngine(checkpoint.path, context=context)


def test_an_fp8_checkpoint_is_planned_as_it_is_held(tmp_path: Path) -> None:
    """Block-FP8 projections a byte each, embedding and head in the compute dtype: AntAngelMed-FP8 loaded as it is
    must be planned at its 97 GiB, not at twice that, or an H200 would refuse it."""
    from bench.gpu_check import SMALL, write_checkpoint

    write_checkpoint(tmp_path, SMALL.config, torch.device("cpu"))
    engine = LocalEngine(tmp_path)
    assert engine.memory.weight_bytes == pytest.approx(loaded_bytes(engine), rel=0.1)
