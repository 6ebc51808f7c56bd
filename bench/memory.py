"""What AntAngelMed needs in memory, by the engine's own plan (engine/memory.py), before anyone downloads 200 GB.

    python -m bench.memory

Builds AntAngelMed's module on PyTorch's meta device from its config (the values of ../shared/docs/engine-spec.md
§2: Ling-flash-2.0's shape), so the tensor shapes are the checkpoint's without its weights, and prints the plan for
each precision the engine holds it in and for 32K and 128K tokens of context, against the memory of machines
clinics run it on.
"""

from __future__ import annotations

import torch

from bench import markdown
from engine.config import with_yarn
from engine.models import hf_config
from engine.memory import GIB, plan_memory
from engine.models import ARCHITECTURES

# Ling-flash-2.0 = AntAngelMed (engine-spec.md §2), as its config.json writes it.
ANTANGELMED = {
    "architectures": ["BailingMoeV2ForCausalLM"], "model_type": "bailing_moe", "hidden_size": 4096,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
    "vocab_size": 157184, "intermediate_size": 9216, "moe_intermediate_size": 1024,
    "moe_shared_expert_intermediate_size": 1024, "num_experts": 256, "num_experts_per_tok": 8,
    "num_shared_experts": 1, "n_group": 8, "topk_group": 4, "routed_scaling_factor": 2.5, "first_k_dense_replace": 1,
    "score_function": "sigmoid", "use_qk_norm": True, "use_qkv_bias": False, "rms_norm_eps": 1e-6,
    "rope_theta": 600000, "partial_rotary_factor": 0.5, "max_position_embeddings": 32768, "tie_word_embeddings": False,
    "eos_token_id": 156892, "torch_dtype": "bfloat16",
}
# (precision as held, compute dtype, KV dtype, device): how the engine runs it on a GPU and on a CPU.
RUNS = [
    ("bf16", torch.bfloat16, torch.bfloat16, "GPU"),
    ("fp8", torch.bfloat16, torch.bfloat16, "GPU"),
    ("fp8", torch.bfloat16, torch.float8_e4m3fn, "GPU"),
    ("int4", torch.float32, torch.float32, "CPU"),
    ("int4", torch.float32, torch.float8_e4m3fn, "CPU"),
]
MACHINES = {"H200 (141 GB)": 141e9, "workstation 256 GiB": 256 * GIB, "workstation 512 GiB": 512 * GIB}


def main() -> None:
    config = hf_config(ANTANGELMED)
    with torch.device("meta"):
        model = ARCHITECTURES[config.architecture](config)
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    print(f"AntAngelMed: {sum(torch.Size(shape).numel() for shape in shapes.values()) / 1e9:.2f} B parameters\n")
    print(markdown.table(["weights", "device", "KV cache", "context", "weights (GiB)", "KV (GiB)", "needed (GiB)",
                          *MACHINES]))
    for quantize, dtype, kv_dtype, device in RUNS:
        for context in (32768, 131072):
            stretched = with_yarn(config, context) if context > config.context_window else config
            plan = plan_memory(stretched, shapes, dtype, None if quantize == "bf16" else quantize,
                               torch.device("meta"), context, kv_dtype, available=0)
            fits = [
                "—" if (device == "GPU") != machine.startswith("H200") else
                "fits" if plan.needed_bytes <= memory * 0.9 else "no"
                for machine, memory in MACHINES.items()
            ]
            print(markdown.row([quantize, device, str(kv_dtype).removeprefix("torch."), f"{context:,}",
                                f"{plan.weight_bytes / GIB:.1f}", f"{plan.kv_bytes_per_token * context / GIB:.1f}",
                                f"{plan.needed_bytes / GIB:.1f}", *fits]))


if __name__ == "__main__":
    main()
