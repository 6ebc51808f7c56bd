"""One module per architecture; `ARCHITECTURES` maps a config's architecture to its model class, and
`GGUF_READERS` maps llama.cpp's name for an architecture to its module's readers of a GGUF file: the config from the
metadata, and each tensor under the checkpoint name the model loads it by."""

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
