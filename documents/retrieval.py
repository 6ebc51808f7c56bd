"""Ranking a record's passages against a question: BM25, fused with sentence embeddings when they are installed."""

from typing import Literal

import numpy as np

from documents import embeddings

Ranking = Literal["bm25", "bm25+embeddings"]

# Reciprocal rank fusion: a passage scores 1 / (K + its rank) in each ranking.
# Ranks, not raw scores, are added, because BM25 scores and cosine
# similarities are on scales that do not compare; 60 is the usual K.
_RRF_K = 60


def rank(texts: list[str], question: str, use_embeddings: bool = True) -> tuple[list[int], Ranking]:
    """The positions of `texts`, most relevant to `question` first (ties in record order), and how they were ranked."""
    orders = [_order(_bm25(texts, question))]
    similarity = embeddings.similarities(question, texts) if use_embeddings else None
    if similarity is None:
        return orders[0], "bm25"
    orders.append(_order(similarity))
    fused = np.zeros(len(texts))
    for order in orders:
        fused[order] += 1.0 / (_RRF_K + 1 + np.arange(len(order)))
    return _order(fused), "bm25+embeddings"


def _bm25(texts: list[str], question: str) -> np.ndarray:
    # Imported here: it takes a second or two (with scipy, when installed),
    # and only records too long for the model need it.
    import bm25s

    corpus = bm25s.tokenize(texts, stopwords="en", show_progress=False)
    if not corpus.vocab:
        # Passages of stop words and single characters only: nothing to index.
        return np.zeros(len(texts))
    index = bm25s.BM25()
    index.index(corpus, show_progress=False)
    words = bm25s.tokenize([question], stopwords="en", return_ids=False, show_progress=False)[0]
    known = [word for word in words if word in index.vocab_dict]
    if not known:
        # Nothing of the question occurs in the record: no passage is better than another.
        return np.zeros(len(texts))
    return index.get_scores(known)


def _order(scores: np.ndarray) -> list[int]:
    # A stable sort keeps equal scores in record order.
    return [int(i) for i in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")]
