"""Block FP8 weights (engine-spec §7): the format, the Fp8Linear paths, and quantizing a model at load."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from engine import fp8
from engine.fp8 import FP8, Fp8Linear, dequantize_block_fp8, quantize_block_fp8


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("shape", [(256, 384), (200, 300), (1, 129), (128, 128)])
def test_round_trip_error_is_bounded_by_the_block_scale(shape):
    torch.manual_seed(0)
    w = torch.randn(shape) * torch.logspace(-3, 1, shape[1])  # columns of very different magnitude
    q, s = quantize_block_fp8(w)
    assert q.dtype == FP8 and q.shape == w.shape
    assert s.dtype == torch.float32 and s.shape == (-(-shape[0] // 128), -(-shape[1] // 128))
    back = dequantize_block_fp8(q, s, torch.float32)
    assert back.shape == w.shape
    # e4m3 keeps 3 mantissa bits: a normal value rounds by at most 2^-4 of itself, a subnormal (below 2^-6·s) by half
    # its 2^-9·s step. Since |W| ≤ 448·s, every element is then within 2^-4 of its block's max.
    s_full = s.repeat_interleave(128, 0)[: shape[0]].repeat_interleave(128, 1)[:, : shape[1]]
    err = (back - w).abs()
    assert (err <= 2**-4 * 448 * s_full).all()
    assert (err <= (2**-4 + 1e-6) * w.abs() + 2**-10 * s_full).all()
    # Each block's largest magnitude lands on ±448, so the stored scale is exactly the block max / 448.
    assert torch.allclose(s * 448, _block_absmax(w), rtol=1e-6)
    assert torch.equal(_block_absmax(q.float()), torch.full_like(s, 448.0))


def _block_absmax(w: torch.Tensor) -> torch.Tensor:
    rows, cols = w.shape
    p = torch.zeros(rows + -rows % 128, cols + -cols % 128)
    p[:rows, :cols] = w.abs()
    return p.view(p.shape[0] // 128, 128, p.shape[1] // 128, 128).amax(dim=(1, 3))


def test_zero_block_uses_the_scale_floor():
    w = torch.randn(256, 256)
    w[:128, 128:] = 0
    q, s = quantize_block_fp8(w)
    assert s[0, 1].item() == pytest.approx(1e-4 / 448)
    back = dequantize_block_fp8(q, s, torch.float32)
    assert torch.isfinite(back).all() and (back[:128, 128:] == 0).all()


def test_quantize_does_not_touch_its_input():
    w = torch.randn(128, 256)
    before = w.clone()
    quantize_block_fp8(w)
    assert torch.equal(w, before)


class _Proj(nn.Module):
    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.proj = Fp8Linear(in_features, out_features, device="meta")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def test_fp8_checkpoint_loads_by_name_from_safetensors(tmp_path):
    torch.manual_seed(1)
    q, s = quantize_block_fp8(torch.randn(384, 256) * 0.05)
    path = tmp_path / "model.safetensors"
    save_file({"proj.weight": q, "proj.weight_scale_inv": s}, str(path))

    model = _Proj(256, 384)
    model.load_state_dict(load_file(str(path)), assign=True)
    assert model.proj.weight.dtype == FP8 and torch.equal(model.proj.weight.view(torch.uint8), q.view(torch.uint8))
    assert torch.equal(model.proj.weight_scale_inv, s)

    x = torch.randn(2, 5, 256)
    expected = x @ dequantize_block_fp8(q, s, torch.float32).T
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fp8_linear_is_close_to_the_linear_it_came_from(dtype):
    torch.manual_seed(2)
    linear = nn.Linear(512, 640, bias=True).to(dtype)
    layer = Fp8Linear.from_linear(linear)
    x = torch.randn(3, 7, 512, dtype=dtype)
    out = layer(x)
    assert out.dtype == dtype and out.shape == (3, 7, 640)
    err = _rel(out, linear(x))
    print(f"Fp8Linear vs {dtype} nn.Linear: relative error {err:.4f}")
    assert err < 0.05


def test_fp8_linear_is_about_one_byte_per_parameter():
    linear = nn.Linear(1024, 4096, bias=False)
    layer = Fp8Linear.from_linear(linear)
    fp8_bytes = sum(t.nbytes for t in layer.state_dict().values())
    fp32_bytes = linear.weight.nbytes
    print(f"resident: Fp8Linear {fp8_bytes} B vs fp32 Linear {fp32_bytes} B ({fp8_bytes / fp32_bytes:.4f}x)")
    assert fp8_bytes <= 0.27 * fp32_bytes


def _random_fp8_layer(out_features: int, in_features: int) -> Fp8Linear:
    """Random finite e4m3 bytes (0x7f and 0xff are NaN), made without a full-precision temporary."""
    layer = Fp8Linear(in_features, out_features)
    layer.weight = torch.randint(0, 0x7F, (out_features, in_features), dtype=torch.uint8).view(FP8)
    layer.weight_scale_inv = torch.full(layer.weight_scale_inv.shape, 1e-3)
    return layer


def test_cpu_forward_dequantizes_a_few_block_rows_at_a_time(monkeypatch):
    layer = _random_fp8_layer(4096, 4096)
    x = torch.randn(1, 4096)
    expected = x @ dequantize_block_fp8(layer.weight, layer.weight_scale_inv, torch.float32).T
    seen = []

    def spy(q, scale_inv, dtype, block):
        seen.append(q.shape[0])
        return dequantize_block_fp8(q, scale_inv, dtype, block)

    monkeypatch.setattr(fp8, "dequantize_block_fp8", spy)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-4)
    assert sum(seen) == 4096 and max(seen) <= 1024 and all(rows % 128 == 0 for rows in seen)


_PEAK_SCRIPT = """
import importlib.util, sys, torch

spec = importlib.util.spec_from_file_location("fp8", sys.argv[1])  # the module alone: only torch to import
fp8 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fp8)

def kib(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))

layer = fp8.Fp8Linear(4096, 4096)
layer.weight = torch.randint(0, 0x7F, (4096, 4096), dtype=torch.uint8).view(fp8.FP8)
layer.weight_scale_inv = torch.full((32, 32), 1e-3)
x = torch.randn(1, 4096, dtype=getattr(torch, sys.argv[2]))
fp8.Fp8Linear.from_linear(torch.nn.Linear(256, 256))(x[:, :256])  # warm up kernels and thread pools
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
before = kib("VmRSS")
layer(x)
print(kib("VmHWM") - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cpu_forward_peak_memory_stays_below_a_dequantized_copy(dtype):
    # A fresh process, so that nothing else allocates between resetting the peak and reading it. A fixed mmap
    # threshold makes glibc hand every large free back at once, so the peak RSS tracks live tensors rather than what
    # the allocator chose to keep (on this machine: ~16 MiB chunked, 64 / 96 MiB for a full fp32 / bf16 dequant).
    args = [sys.executable, "-c", _PEAK_SCRIPT, fp8.__file__, dtype]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    done = subprocess.run(args, capture_output=True, text=True, check=True, env=env)
    grown_mib = int(done.stdout.split()[-1]) / 1024
    full_copy_mib = 4096 * 4096 * 4 / 2**20
    print(f"4096x4096 {dtype} CPU forward: peak RSS +{grown_mib:.1f} MiB; full fp32 copy {full_copy_mib:.0f} MiB")
    assert grown_mib < full_copy_mib / 2


def _emulated_w8a8(x: torch.Tensor, q: torch.Tensor, scale_inv: torch.Tensor) -> torch.Tensor:
    """Block W8A8 in plain fp32: activations quantized per token per 128-wide K group, then
    out[m, n] = Σ_kb s_a[m, kb] · s_w[n // 128, kb] · (x_q[m, kb] · w_q[n, kb])."""
    groups = x.float().view(x.shape[0], -1, 128)
    s_a = groups.abs().amax(-1).clamp(min=1e-10) / 448
    x_q = (groups / s_a[..., None]).clamp(-448, 448).to(FP8).float()
    w_q = q.float().view(q.shape[0], -1, 128)
    s_w = scale_inv.repeat_interleave(128, 0)[: q.shape[0]]
    partial = torch.einsum("mkc,nkc->mnk", x_q, w_q)
    return (partial * s_a[:, None, :] * s_w[None, :, :]).sum(-1)


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9,
    reason="cuBLASLt's block-scaled FP8 GEMM exists only on SM90 GPUs",
)
@pytest.mark.parametrize("tokens", [1, 7, 256])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_cuda_w8a8_matches_its_emulation_and_the_dequant_path(tokens, dtype):
    torch.manual_seed(5)
    # Magnitudes that differ from block to block and from K group to K group, so a misplaced scale cannot hide.
    block_scale = torch.logspace(-2, 2, 8 * 32, device="cuda")[torch.randperm(8 * 32, device="cuda")].view(8, 32)
    w = torch.randn(1024, 4096, device="cuda") * block_scale.repeat_interleave(128, 0).repeat_interleave(128, 1)
    layer = Fp8Linear(4096, 1024, device="cuda")
    layer.weight, layer.weight_scale_inv = quantize_block_fp8(w)
    x = torch.randn(tokens, 4096, device="cuda") * torch.logspace(-1, 1, 32, device="cuda").repeat_interleave(128)
    x = x.to(dtype)
    out = layer(x)
    assert out.dtype == dtype and out.shape == (tokens, 1024)
    emulated = _emulated_w8a8(x, layer.weight, layer.weight_scale_inv)
    dequant = x.float() @ dequantize_block_fp8(layer.weight, layer.weight_scale_inv, torch.float32).T
    err_emulated, err_dequant = _rel(out, emulated), _rel(out, dequant)
    print(f"cuda {dtype} T={tokens}: vs emulated W8A8 {err_emulated:.2e}, vs dequant (W8A16) {err_dequant:.4f}")
    assert err_emulated < (1e-2 if dtype == torch.bfloat16 else 1e-3)
    # W8A8 adds the activations' e4m3 rounding, ~2.5% relative like the weights'.
    assert err_dequant < 0.04
