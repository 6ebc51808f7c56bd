"""Shared fixtures: the evaluation corpus beside the repo, its documents read once, and one loaded engine for the
whole run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# After the environment above: transformers reads it when imported.
import documents  # noqa: E402
from app.accounts import User  # noqa: E402
from documents import Document  # noqa: E402
from engine import ChatMessage, Event, GenerationParams, LocalEngine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"

# The corpus's structured records, by format.
FHIR_FILES = [
    "synthea_fhir_asa_hermiston.json",
    "synthea_fhir_dennis_durgan.json",
    "synthea_fhir_marcos_delagarza.json",
    "synthea_fhir_reyna_ziemann.json",
]
CCDA_FILES = [
    "ccda_ccd_eve_betterhalf.xml",
    "ccda_discharge_summary_isabella_jones.xml",
    "ccda_progress_note_adam_everyman.xml",
    "ccda_referral_note_eve_betterhalf.xml",
]


def relative_error(actual, expected) -> float:
    """The largest difference between two tensors, relative to the largest magnitude expected: float sums in
    another order differ by a few ulps of the values compared, so a bound on this holds whatever their scale."""
    scale = expected.abs().max().item()
    return (actual - expected).abs().max().item() / (scale if scale > 0 else 1.0)


@pytest.fixture(scope="session")
def corpus() -> Path:
    assert CORPUS.is_dir(), f"the evaluation corpus is expected at {CORPUS}"
    return CORPUS


@pytest.fixture(scope="session")
def corpus_documents(corpus: Path) -> dict[str, Document]:
    """Every document of the corpus, read once for the whole run, by file name."""
    files = [path for path in sorted(corpus.iterdir()) if path.is_file() and path.suffix != ".md"]
    return {path.name: documents.load(path) for path in files}


@pytest.fixture(scope="session")
def local_engine():
    """The default SmolLM2-135M-Instruct engine, loaded once: loading takes seconds."""
    return LocalEngine()


@pytest.fixture(scope="session")
def int4_engine(local_engine):
    """The same model with int4 weights, as `--quantize auto` loads the bundled GGUF on a CPU."""
    return LocalEngine(local_engine.checkpoint_path, quantize="int4")


class RecordingEngine:
    """The real engine, noting each prompt it is asked to answer; `context_window` makes it claim a smaller
    window than its own, so that a record of a few corpus files is too long for it."""

    def __init__(self, engine: LocalEngine, context_window: int | None = None) -> None:
        self._engine = engine
        self._context_window = context_window
        self.info = engine.info
        self.prompts: list[list[ChatMessage]] = []

    @property
    def context_window(self) -> int:
        return self._context_window or self._engine.context_window

    def count_tokens(self, text: str) -> int:
        return self._engine.count_tokens(text)

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return self._engine.count_prompt_tokens(messages)

    def generate(self, prompt: Sequence[ChatMessage], params: GenerationParams) -> Iterator[Event]:
        self.prompts.append(list(prompt))
        return self._engine.generate(prompt, params)

    def forget(self) -> None:
        self._engine.forget()


def tiny_bailing_reference(vocab_size: int, **dims):
    """A tiny random Glm4Moe to write out as BailingMoeV2 (engine/reference.py): one dense layer, one MoE layer of
    8 experts in 2 groups; `dims` change its Glm4MoeConfig fields."""
    from engine.reference import random_glm4_moe

    tiny = dict(
        hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=2048, n_routed_experts=8, num_experts_per_tok=2,
        n_group=2, topk_group=1, n_shared_experts=1, routed_scaling_factor=2.5, first_k_dense_replace=1,
        eos_token_id=2,
    )
    return random_glm4_moe(vocab_size, **tiny | dims)


def tiny_bailing_checkpoint(directory: Path, engine: LocalEngine) -> Path:
    """A tiny BailingMoeV2 checkpoint with random weights and `engine`'s tokenizer, written to `directory`."""
    from engine.reference import save_as_bailing

    directory.mkdir(parents=True, exist_ok=True)
    save_as_bailing(tiny_bailing_reference(engine.config.vocab_size), directory)
    engine.tokenizer.hf.save_pretrained(directory)
    return directory


# The clinician whose sessions the tests make: the command line's own user.
CLINICIAN = User(name="local")
