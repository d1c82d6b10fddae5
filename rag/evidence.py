"""Pick the few abstract sentences that answer a question, so the prompt stays short.

Score of a sentence (higher is better), all parts roughly in 0..1:

* lexical: IDF-free BM25 over stemmed content terms (``k1=1.2``, ``b=0.75``, lengths
  against the abstract's mean sentence length) divided by ``(k1 + 1) * |question terms|``;
* semantic (only with ``embed``): cosine similarity of question and sentence;
* +0.05 for the first sentence (it usually states the contribution);
* +0.05 for a sentence with a number when the question asks for a quantity.

Ties go to the earlier sentence; the chosen sentences come back in abstract order.

>>> select_evidence("What BLEU does it get?", "We add attention. It gets 28.4 BLEU. Code out.", 1)
['It gets 28.4 BLEU.']
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable, Sequence

import numpy as np

from .injection import evidence_sentences
from .sentences import content_terms, numbers_in

Embed = Callable[[list[str]], Sequence[Sequence[float]]]

K1, B = 1.2, 0.75
FIRST_BONUS, NUMBER_BONUS = 0.05, 0.05
_QUANTITY = re.compile(r"\b(how (many|much|fast|large|long|big|often|well)|accuracy|score|bleu|"
                       r"f1|percent(age)?|rate|speed-?up|improve\w*|reduc\w*|number of|size|"
                       r"perplexity|error)\b", re.I)


def bm25_scores(query_terms: Sequence[str], docs: Sequence[Sequence[str]]) -> list[float]:
    """IDF-free BM25 of each term list in ``docs`` for ``query_terms``, scaled to 0..1.

    >>> [round(s, 2) for s in bm25_scores(["bleu"], [["bleu", "score"], ["code"]])]
    [0.4, 0.0]
    """
    q = set(query_terms)
    if not q or not docs:
        return [0.0] * len(docs)
    avg = max(sum(len(d) for d in docs) / len(docs), 1.0)
    out = []
    for d in docs:
        tf = Counter(t for t in d if t in q)
        norm = K1 * (1 - B + B * len(d) / avg)
        out.append(sum(f * (K1 + 1) / (f + norm) for f in tf.values()) / ((K1 + 1) * len(q)))
    return [min(s, 1.0) for s in out]


def cosine_to_first(embed: Embed, texts: list[str]) -> np.ndarray:
    """Cosine similarity of ``texts[1:]`` to ``texts[0]`` (vectors re-normalised).

    >>> cosine_to_first(lambda t: [[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]], ["q", "a", "b"]).tolist()
    [0.0, 1.0]
    """
    vecs = np.asarray(embed(texts), dtype=float).reshape(len(texts), -1)
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    return vecs[1:] @ vecs[0]


def cached_embed(embed: Embed | None) -> Embed | None:
    """``embed`` with a cache: each distinct text is embedded once, new ones in one batch.

    >>> calls = []; e = cached_embed(lambda t: calls.append(t) or [[1.0]] * len(t))
    >>> e(["a", "b"]) and e(["b", "a"]) and calls
    [['a', 'b']]
    """
    cache: dict[str, list[float]] = {}

    def cached(texts: list[str]) -> list[list[float]]:
        if new := [t for t in dict.fromkeys(texts) if t not in cache]:
            cache.update(zip(new, (list(map(float, v)) for v in embed(new))))
        return [cache[t] for t in texts]

    return cached if embed is not None else None


def sentence_scores(question: str, sentences: list[str], embed: Embed | None = None) -> list[float]:
    """Relevance of each sentence to the question (see the module docstring).

    >>> [round(s, 2) for s in sentence_scores("perceptron", ["We study LR.", "A perceptron."])]
    [0.05, 0.53]
    """
    if not sentences:
        return []
    scores = bm25_scores(content_terms(question), [content_terms(s) for s in sentences])
    if embed is not None:
        cos = cosine_to_first(embed, [question, *sentences])
        scores = [s + max(float(c), 0.0) for s, c in zip(scores, cos)]
    wants_number = bool(_QUANTITY.search(question))
    return [
        s + (FIRST_BONUS if i == 0 else 0.0)
        + (NUMBER_BONUS if wants_number and numbers_in(sent) else 0.0)
        for i, (s, sent) in enumerate(zip(scores, sentences))
    ]


def select_evidence(question: str, abstract: str, n: int, embed: Embed | None = None) -> list[str]:
    """The ``n`` sentences of ``abstract`` most relevant to ``question``, in original order.

    Sentences are returned verbatim (as ``split_sentences`` cuts them); sentences that
    instruct the reader are never chosen (``rag.injection``).

    >>> select_evidence("Who wins?", "A wins. B loses. C draws.", 5)
    ['A wins.', 'B loses.', 'C draws.']
    """
    sentences = evidence_sentences(abstract)
    if n <= 0 or not sentences:
        return []
    if len(sentences) <= n:
        return sentences
    scores = sentence_scores(question, sentences, embed)
    best = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))[:n]
    return [sentences[i] for i in sorted(best)]


def pool_evidence(question: str, sources: Sequence[Any], n: int, rank_bonus: float = 0.15,
                  embed: Embed | None = None) -> list[tuple[int, str]]:
    """The ``n`` most relevant sentences across all sources, as ``(source number, sentence)``.

    A small model answers far better from five pertinent sentences than from five whole
    abstracts. The best-ranked source gets ``rank_bonus``, since retrieval agrees on it.

    >>> from rag.types import Source
    >>> a = Source(1, "a", "A", 1.0, "", "Cats purr. Dogs bark loudly.")
    >>> b = Source(2, "b", "B", 0.9, "", "Birds sing. Dogs dig.")
    >>> pool_evidence("Which dogs bark?", [a, b], 2)
    [(1, 'Dogs bark loudly.'), (2, 'Dogs dig.')]
    """
    scored = []
    for source in sources:
        sentences = evidence_sentences(source.abstract or source.text)
        bonus = rank_bonus if source.number == 1 else 0.0
        for i, (sentence, score) in enumerate(zip(sentences, sentence_scores(question, sentences, embed))):
            scored.append((-(score + bonus), source.number, i, sentence))
    return [(number, sentence) for _, number, _, sentence in sorted(scored)[:n]]
