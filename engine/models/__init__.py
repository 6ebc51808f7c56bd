"""One module per architecture; `ARCHITECTURES` maps a config's architecture to its model class."""

from engine.models.llama import LlamaForCausalLM

ARCHITECTURES = {"llama": LlamaForCausalLM}
