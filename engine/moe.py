"""Mixture-of-experts pieces: the sigmoid group-limited router and experts stored as stacked tensors.

All tokens of a step are routed at once; the (token, expert) pairs are sorted by expert and every expert
that received tokens runs once over its contiguous slice, in one grouped matmul call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn

from engine.fp8 import BLOCK, FP8, dequantize_block_fp8
from engine.quantize import INT4_GROUP, IntMode, WeightFormat, dequantized, int_mode, kernel_matmul, kernels_for, register_integer
from engine.scratch import NARROW_ROWS, SCRATCH


class MoEConfig(BaseModel):
    num_experts: int
    experts_per_token: int
    intermediate_size: int
    num_shared_experts: int = 1
    shared_intermediate_size: int | None = None  # falls back to intermediate_size × num_shared_experts
    n_group: int = 1
    topk_group: int = 1
    routed_scaling_factor: float = 1.0
    norm_topk_prob: bool = True
    first_k_dense_replace: int = 0

    @property
    def shared_size(self) -> int:
        return self.shared_intermediate_size or self.intermediate_size * self.num_shared_experts


class SigmoidRouter(nn.Module):
    """DeepSeek-V3 style routing: sigmoid scores; a learned bias steers *which* experts are chosen only;
    experts may come only from the `topk_group` groups whose two best (biased) scores sum highest."""

    def __init__(self, hidden: int, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.empty(cfg.num_experts, hidden))
        self.expert_bias = nn.Parameter(torch.zeros(cfg.num_experts, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [N, hidden] → (weights [N, k] fp32, expert ids [N, k])."""
        cfg = self.cfg
        scores = F.linear(x.float(), self.weight.float()).sigmoid()
        choice = scores + self.expert_bias
        groups = choice.view(-1, cfg.n_group, cfg.num_experts // cfg.n_group)
        group_scores = groups.topk(2, dim=-1).values.sum(-1)
        keep = torch.zeros_like(group_scores, dtype=torch.bool)
        keep.scatter_(1, group_scores.topk(cfg.topk_group, dim=-1).indices, True)
        choice = groups.masked_fill(~keep[..., None], float("-inf")).view(-1, cfg.num_experts)
        ids = choice.topk(cfg.experts_per_token, dim=-1).indices
        weights = scores.gather(1, ids)
        if cfg.norm_topk_prob:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return weights * cfg.routed_scaling_factor, ids


class StackedExperts(nn.Module):
    """All routed experts of a layer as three tensors: gate_proj, up_proj [E, I, H] and down_proj [E, H, I].

    They are held as loaded (full or half precision), in block FP8 (e4m3 values plus `*_scale_inv`), or in int8/int4
    (engine/quantize.py: `*_scale`, and `*_low` for int4). FP8 and integer experts are dequantized in PyTorch only
    for the experts that received tokens, one step at a time, so the weights stay narrow; a compiled decode step
    (engine/cpu_decoder.py) reads integer experts as they are.
    """

    integer_weights = ("gate_proj", "up_proj", "down_proj")

    def __init__(self, hidden: int, cfg: MoEConfig, weights: WeightFormat = "full"):
        super().__init__()
        self.num_experts, self.intermediate, self.fp8 = cfg.num_experts, cfg.intermediate_size, weights == "fp8"
        integer = weights in ("int8", "int4")
        self.integer: IntMode | None = int_mode(weights, hidden, cfg.intermediate_size) if integer else None
        shapes = {
            "gate_proj": (cfg.num_experts, cfg.intermediate_size, hidden),
            "up_proj": (cfg.num_experts, cfg.intermediate_size, hidden),
            "down_proj": (cfg.num_experts, hidden, cfg.intermediate_size),
        }
        for name, shape in shapes.items():
            if self.fp8:
                self.register_buffer(name, torch.empty(shape, dtype=FP8))
                blocks = (shape[0], -(-shape[1] // BLOCK), -(-shape[2] // BLOCK))
                self.register_buffer(name + "_scale_inv", torch.empty(blocks, dtype=torch.float32))
            elif self.integer:
                register_integer(self, name, shape, self.integer)
            else:
                self.register_parameter(name, nn.Parameter(torch.empty(shape), requires_grad=False))

    def forward(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """x: [N, H]; weights, ids: [N, k]. Returns Σ_k weights · expert(x) as [N, H] in x's dtype."""
        k = ids.shape[1]
        flat = ids.flatten()
        order = flat.argsort(stable=True)
        token_of = order // k
        counts = torch.bincount(flat, minlength=self.num_experts)
        # The kernels take whole blocks of 32 inputs: the hidden size (kernels_for checks it) and the experts' own.
        kernels = kernels_for(x) if self.integer and self.intermediate % INT4_GROUP == 0 else None
        if kernels is not None:
            ys = self._in_kernels(kernels, x[token_of].float(), counts).to(x.dtype)
        else:
            gate, up, down, counts = self._weights(counts, x.dtype, tokens=x.shape[0])
            offsets = counts.cumsum(0).to(torch.int32)
            xs = x[token_of].to(gate.dtype)
            h = F.silu(grouped_mm(xs, gate, offsets)) * grouped_mm(xs, up, offsets)
            ys = grouped_mm(h, down, offsets)
        # The reference sums the weighted expert outputs in fp32 before casting back.
        ys = ys.float() * weights.flatten()[order, None]
        out = torch.zeros(x.shape[0], x.shape[1], dtype=torch.float32, device=x.device)
        return out.index_add_(0, token_of, ys).to(x.dtype)

    def _in_kernels(self, kernels, xs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """The experts of a few tokens' rows (xs, sorted by expert) in the int8/int4 kernels, as integer linears run a
        few rows: each expert's weights are read as they are, and each row comes out as it would alone."""
        outputs = []
        for expert, rows in zip(counts.nonzero().flatten().tolist(), xs.split(counts[counts > 0].tolist())):
            gate, up = (self._kernel_matmul(kernels, rows, name, expert) for name in ("gate_proj", "up_proj"))
            outputs.append(self._kernel_matmul(kernels, F.silu(gate) * up, "down_proj", expert))
        return torch.cat(outputs)

    def _kernel_matmul(self, kernels, x: torch.Tensor, name: str, expert: int) -> torch.Tensor:
        q, scale, low = self.integer_parts(name)
        return kernel_matmul(kernels, x, q[expert], scale[expert], None if low is None else low[expert])

    def integer_parts(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """An integer weight's stacked values, scales and (int4) lows, each indexed by expert first."""
        return getattr(self, name), getattr(self, name + "_scale"), getattr(self, name + "_low", None)

    def _weights(self, counts: torch.Tensor, dtype: torch.dtype, tokens: int):
        """(gate, up, down, tokens per expert) for the grouped matmuls, in the dtype they should run in.

        Stored weights run as they are when they match the activations, or when they are narrower (bf16) and the
        step is a few tokens, bound by reading weights. Many tokens make the step bound by arithmetic, which these
        CPUs do fast only in fp32: narrow weights are then upcast. FP8 experts are dequantized, only those that
        received tokens.
        """
        names = self.integer_weights
        stored = self.gate_proj.dtype
        narrow = self.fp8 or self.integer
        if not narrow and (stored == dtype or tokens <= NARROW_ROWS):
            return self.gate_proj, self.up_proj, self.down_proj, counts
        if not narrow:
            return (*(SCRATCH.converted(f"experts.{n}", getattr(self, n), dtype) for n in names), counts)
        active = counts.nonzero().flatten()
        return (*(self._dequantized(name, active, dtype) for name in names), counts[active])

    def _dequantized(self, name: str, active: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The `active` experts' weight `name` in `dtype`."""
        if self.fp8:
            pairs = zip(getattr(self, name)[active], getattr(self, name + "_scale_inv")[active])
            return torch.stack([dequantize_block_fp8(w, s, dtype) for w, s in pairs])
        q, scale, low = self.integer_parts(name)
        return dequantized(q[active], scale[active], None if low is None else low[active], dtype, f"experts.{name}")


def grouped_mm(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Rows of x in consecutive groups (ends at `offsets`), group g multiplied by w[g]^T ([E, out, in])."""
    return torch._grouped_mm(x, w.transpose(1, 2), offs=offsets)


class MoEBlock(nn.Module):
    """Routed experts plus always-on shared experts, whose output is added unscaled."""

    def __init__(self, hidden: int, cfg: MoEConfig, shared_expert: nn.Module, weights: WeightFormat = "full"):
        super().__init__()
        self.gate = SigmoidRouter(hidden, cfg)
        self.experts = StackedExperts(hidden, cfg, weights)
        self.shared_experts = shared_expert

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        weights, ids = self.gate(flat)
        routed = self.experts(flat, weights, ids)
        return (routed + self.shared_experts(flat)).view_as(x)
