"""Shared fixtures: the evaluation corpus beside the repo, and one loaded engine for the whole run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus() -> Path:
    assert CORPUS.is_dir(), f"the evaluation corpus is expected at {CORPUS}"
    return CORPUS


@pytest.fixture(scope="session")
def local_engine():
    """The default SmolLM2-135M-Instruct engine, loaded once: loading takes seconds."""
    from engine import LocalEngine

    return LocalEngine()
