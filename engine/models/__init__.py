"""One module per architecture, each with its config reading, checkpoint-name mapping and chat template beside the
model. `ARCHITECTURES` maps a config's architecture to its model class; `hf_config` reads an HF `config.json` with
the module its architecture names; `GGUF_READERS` maps llama.cpp's name for an architecture to its module's readers
of a GGUF file (the config from the metadata, and each tensor under the checkpoint name the model loads it by);
`CHAT_TEMPLATES` holds the templates of checkpoints that ship without one (the tokenizer's own always wins)."""

from typing import Any, Callable

import torch

from engine.config import ModelConfig
from engine.models import bailing_moe_v2, llama
from engine.models.bailing_moe_v2 import BailingMoeV2ForCausalLM
from engine.models.llama import LlamaForCausalLM

ARCHITECTURES = {"llama": LlamaForCausalLM, "bailing_moe_v2": BailingMoeV2ForCausalLM}

GgufConfigReader = Callable[[dict[str, Any], dict[str, tuple[int, ...]]], ModelConfig]
GgufTensorNamer = Callable[[str, torch.Tensor, ModelConfig], tuple[str, torch.Tensor]]
GGUF_READERS: dict[str, tuple[GgufConfigReader, GgufTensorNamer]] = {
    "llama": (llama.gguf_config, llama.gguf_to_hf),
    "bailingmoe2": (bailing_moe_v2.gguf_config, bailing_moe_v2.gguf_to_hf),
}


CHAT_TEMPLATES = {"bailing_moe_v2": bailing_moe_v2.CHAT_TEMPLATE}


def hf_config(raw: dict[str, Any]) -> ModelConfig:
    """The normalised config of an HF checkpoint's `config.json`."""
    if "BailingMoeV2ForCausalLM" in raw.get("architectures", []) or raw.get("model_type") == "bailing_moe_v2":
        return bailing_moe_v2.hf_config(raw)
    return llama.hf_config(raw)
