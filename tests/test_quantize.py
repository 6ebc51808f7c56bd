"""int8 / int4 weight-only linears (engine/quantize.py): quantization error bounds, the layers against fp32, rows
that do not disturb each other, and SmolLM2 loaded with `quantize="int8"` and `"int4"` against fp32."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.nn.functional as F

from engine import ChatMessage, GenerationParams, LocalEngine, Stats
from engine.kernels import cpu_kernels
from engine.scratch import NARROW_ROWS
from engine.quantize import (
    INT4_GROUP,
    Int4Linear,
    Int8Linear,
    dequantize_int4,
    dequantize_int8,
    dequantized as stored_weight,
    deinterleave_rows,
    interleave_rows,
    pack_int4,
    quantize_int4,
    quantize_int8,
    quantized,
    unpack_int4,
)
from engine.weights import resident_bytes

# SmolLM2's projection shapes: attention (q/o, k/v) and MLP (gate/up, down).
SHAPES = [(576, 576), (192, 576), (1536, 576), (576, 1536), (1001, 64)]
PROMPT = (
    "Discharge summary. The patient is a 67-year-old woman admitted for elective right total knee arthroplasty. "
    "Her history includes hypertension, type 2 diabetes and hyperlipidemia. Postoperatively she received "
    "enoxaparin for thromboprophylaxis and oxycodone for pain."
)


def _weight(out_features: int, in_features: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(out_features, in_features, generator=generator) * 0.02


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).norm() / want.float().norm()).item()


def test_int8_round_trip_is_within_half_a_step_per_block():
    w = _weight(1536, 576)
    w[3, 7] = 2.0  # an outlier (25x the others) widens its own block's step only
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and scale.shape == (1536, 576 // 32) and scale.dtype == torch.float16
    error = (dequantize_int8(q, scale) - w).abs().view(1536, -1, 32)
    assert (error <= 0.5 * scale.float()[..., None] * 1.001).all()
    assert error[3, 1:].max() < error[3, 0].max() / 10 and error[4].max() < error[3, 0].max() / 10
    # A width that is no whole number of blocks keeps one scale per row.
    odd = _weight(8, 40)
    q, scale = quantize_int8(odd)
    assert scale.shape == (8, 1) and ((dequantize_int8(q, scale) - odd).abs() <= 0.5 * scale.float() * 1.001).all()


def test_int4_round_trip_is_within_half_a_step_per_group():
    w = _weight(576, 1536)
    q, scale, low = quantize_int4(w)
    assert q.dtype == torch.uint8 and int(q.max()) <= 15
    assert scale.shape == low.shape == (576, 1536 // INT4_GROUP)
    error = (dequantize_int4(q, scale, low) - w).abs().view(576, -1, INT4_GROUP)
    assert (error <= 0.5 * scale[..., None] * 1.0001).all()


def test_int4_recovers_weights_already_on_a_4bit_grid():
    """A GGUF Q4_1 tensor is 16 levels per block of 32: requantizing at the same blocks gives its own values."""
    generator = torch.Generator().manual_seed(1)
    levels = torch.randint(0, 16, (576, 576), generator=generator).float().view(576, -1, INT4_GROUP)
    levels[..., 0], levels[..., 1] = 0, 15  # every block spans its whole grid, as Q4_1's min/max rounding gives
    # Q4_1 holds each block's step and low in fp16.
    step = (torch.rand(576, 576 // INT4_GROUP, 1, generator=generator) * 0.01 + 0.001).half().float()
    low = (torch.randn(576, 576 // INT4_GROUP, 1, generator=generator) * 0.01).half().float()
    w = (levels * step + low).view(576, 576)
    q, scale, low = quantize_int4(w)
    assert torch.equal(q.view(576, -1, INT4_GROUP).float(), levels)
    assert _relative(dequantize_int4(q, scale, low), w) < 1e-6


@pytest.mark.parametrize("layer_class, tolerance", [(Int8Linear, 0.015), (Int4Linear, 0.12)])
@pytest.mark.parametrize("out_features, in_features", SHAPES)
def test_integer_linear_against_fp32(layer_class, tolerance, out_features, in_features):
    """Decode-sized inputs (kernel path) and a prefill-sized one (fp32 GEMM on the dequantized weight) against an
    fp32 matmul on the original weight; the tolerances are the quantization's own error on random weights."""
    w = _weight(out_features, in_features)
    layer = layer_class(in_features, out_features)
    for name, tensor in quantized(w, layer.integer).items():
        getattr(layer, "weight" + name).copy_(tensor)
    low = getattr(layer, "weight_low", None)
    dequantized = stored_weight(layer.weight, layer.weight_scale, low, torch.float32, "test").clone()
    # The stored buffers, interleaved for the kernels, hold the weight as quantized.
    assert torch.equal(dequantized, dequantize_int8(*quantize_int8(w)) if low is None else dequantize_int4(*quantize_int4(w)))
    for rows in (1, 8, 3 * NARROW_ROWS):
        x = torch.randn(1, rows, in_features)
        got = layer(x)
        assert got.shape == (1, rows, out_features) and got.dtype == torch.float32
        assert _relative(got, F.linear(x, w)) < tolerance
        # Against the quantized weight itself, only the kernel's int8 activations remain (fp32 past NARROW_ROWS).
        assert _relative(got, F.linear(x, dequantized)) < (0.01 if rows <= NARROW_ROWS else 1e-5)


@pytest.mark.parametrize("layer_class", [Int8Linear, Int4Linear])
def test_rows_get_what_they_get_alone(layer_class):
    """Each row of a matmul of up to NARROW_ROWS rows is bitwise what that row gets alone: a drafted step
    verifies (and a batched step decodes) exactly as one-token steps would, so these weights are not narrow."""
    layer = layer_class(576, 1536)
    for name, tensor in quantized(_weight(1536, 576), layer.integer).items():
        getattr(layer, "weight" + name).copy_(tensor)
    x = torch.randn(NARROW_ROWS, 576)
    alone = torch.cat([layer(x[r : r + 1]) for r in range(NARROW_ROWS)])
    for rows in range(2, NARROW_ROWS + 1):
        assert torch.equal(layer(x[:rows]), alone[:rows])


def test_kernels_called_from_several_threads_at_once_give_each_its_own_result():
    """The kernels' worker threads (engine/kernels/workers.cpp) run one loop at a time: callers on other threads, as
    two engines' schedulers would be, wait their turn and get what they would alone."""
    layer = Int4Linear(576, 1536)
    for name, tensor in quantized(_weight(1536, 576), layer.integer).items():
        getattr(layer, "weight" + name).copy_(tensor)
    inputs = [torch.randn(r + 1, 576) for r in range(6)]
    alone = [layer(x) for x in inputs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        for _ in range(5):
            together = list(pool.map(layer, inputs))
            assert all(torch.equal(a, b) for a, b in zip(alone, together))


def test_int4_packing_round_trips_and_is_what_the_kernel_reads():
    q = torch.randint(0, 16, (192, 576), dtype=torch.uint8)
    packed = pack_int4(q)
    assert packed.shape == (192, 288) and packed.dtype == torch.uint8
    assert torch.equal(unpack_int4(packed), q)
    layer = Int4Linear(576, 192)
    layer.weight.copy_(interleave_rows(packed, 576 // INT4_GROUP, 576))
    layer.weight_scale.fill_(1.0)
    layer.weight_low.zero_()
    # With scale 1 and low 0, one-hot rows read back the values, column by column, on both paths.
    for rows in (NARROW_ROWS, 576):
        assert torch.equal(layer(torch.eye(576)[:rows]).t(), q[:, :rows].float())


@pytest.mark.parametrize("rows", [8, 24, 13, 3])
def test_interleaved_rows_round_trip_and_put_four_inputs_of_each_row_side_by_side(rows):
    """The kernels' layout: in each group of eight rows (or the last group's fewer) and each block, four bytes of the
    first row, four of the next, and so on; scales one per row. A width of no whole blocks stays as it is."""
    q = torch.arange(rows * 64, dtype=torch.int32).view(rows, 64)  # int8-like: 64 inputs, 2 blocks, 32 bytes each
    stored = interleave_rows(q, 2, 64)
    assert torch.equal(deinterleave_rows(stored, 2, 64), q)
    size = min(8, rows)
    first_group = stored.flatten()[: size * 64]
    # Block 0: chunk 0 of rows 0..size-1, then chunk 1, ...; then block 1.
    assert torch.equal(first_group[: 4 * size].view(size, 4), q[:size, :4])
    assert torch.equal(first_group[4 * size : 8 * size].view(size, 4), q[:size, 4:8])
    assert torch.equal(first_group[32 * size : 36 * size].view(size, 4), q[:size, 32:36])
    scales = torch.arange(rows * 2).view(rows, 2)
    assert torch.equal(interleave_rows(scales, 2, 64).flatten()[: 2 * size].view(2, size), scales[:size].t())
    odd = torch.arange(rows * 40).view(rows, 40)
    assert torch.equal(interleave_rows(odd, 1, 40), odd)


def test_the_cpu_kernels_are_built_here():
    """CI's machines have AVX2 and a compiler: the decode path must be the kernels, not the fp32 fallback."""
    assert cpu_kernels() is not None


@pytest.fixture(scope="module", params=["int8", "int4"])
def integer_engine(request):
    return LocalEngine(quantize=request.param)


def test_smollm2_with_integer_weights_stays_near_fp32(local_engine, integer_engine):
    """The same prompt's logits, prefilled in one pass and decoded one token at a time, against fp32."""
    model = integer_engine.model
    layer = model.model.layers[0]
    expected = Int4Linear if integer_engine.info.precision.split("→ ")[1].startswith("int4") else Int8Linear
    assert isinstance(layer.mlp.down_proj, expected) and isinstance(layer.self_attn.qkv_proj, expected)
    assert isinstance(model.lm_head, Int8Linear)  # int4 keeps an 8-bit head: the logits are what gets sampled
    assert model.model.embed_tokens.weight.dtype == torch.float32
    ids = local_engine.tokenizer.encode(PROMPT)

    def logits(engine: LocalEngine, one_at_a_time: bool) -> torch.Tensor:
        cache = engine.new_cache(len(ids))
        with torch.inference_mode():
            if not one_at_a_time:
                return engine.model(torch.tensor([ids]), [cache], [0])[0]
            return torch.cat([engine.model(torch.tensor([[t]]), [cache], [i])[0] for i, t in enumerate(ids)])

    full = logits(local_engine, one_at_a_time=False)
    # Measured on this prompt: int8 0.026 / 0.043 stepwise (it holds the checkpoint's Q8_0 blocks as they are, and
    # its Q4_1 ones in 8 bits), int4 0.000 / 0.031 (its blocks are the checkpoint's; stepwise, the kernels' int8
    # activations make the rest).
    bound = 0.06 if expected is Int8Linear else 0.04
    for one_at_a_time in (False, True):
        got = logits(integer_engine, one_at_a_time)
        agreement = (got.argmax(-1) == full.argmax(-1)).float().mean().item()
        print(f"{integer_engine.info.precision} ({'stepwise' if one_at_a_time else 'prefill'}): relative logit "
              f"error {_relative(got, full):.4f}, top-1 agreement {agreement:.3f}, weights "
              f"{resident_bytes(integer_engine.model) / 2**20:.0f} MiB vs {resident_bytes(local_engine.model) / 2**20:.0f}")
        assert _relative(got, full) < bound
        assert agreement >= 0.85
        assert got[-1].argmax() == full[-1].argmax()
    # The tied embedding (113 MiB) stays fp32; the projections and the head shrink four- or eight-fold.
    assert resident_bytes(integer_engine.model) < 0.5 * resident_bytes(local_engine.model)


def test_drafting_leaves_integer_greedy_output_unchanged(integer_engine):
    messages = [ChatMessage(role="user", content="Repeat the medications of this note:\n\n" + PROMPT)]

    def text(draft_tokens: int) -> tuple[str, Stats]:
        integer_engine.prefix_cache.clear()
        events = list(integer_engine.generate(messages, GenerationParams(max_new_tokens=40, draft_tokens=draft_tokens)))
        return "".join(e.text for e in events[:-1]), events[-1]

    plain, _ = text(0)
    drafted, stats = text(8)
    assert stats.drafted > 0
    assert drafted == plain
