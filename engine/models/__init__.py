"""One module per architecture; `ARCHITECTURES` maps a config's architecture to its model class."""

from engine.models.bailing_moe_v2 import BailingMoeV2ForCausalLM
from engine.models.llama import LlamaForCausalLM

ARCHITECTURES = {"llama": LlamaForCausalLM, "bailing_moe_v2": BailingMoeV2ForCausalLM}
