"""Evaluation metrics: pure functions over prediction records, no model involved.

A prediction record is one line of ``predictions.jsonl`` (see ``rag.evaluation.run``): a dict with
``type``, ``answer``, ``refused``, ``cited_titles``, ``retrieved_titles`` (ranked),
``gold_titles``, ``keywords``, ``seconds`` and ``sentences`` (each with ``supported``).
Titles are compared with :func:`rag.corpus.normalize_title`. An item is *answerable* unless
its type is ``unanswerable``; it is *answered* unless the system refused it. A metric with
no item to average over is ``None`` (shown as "n/a"), never a silent 0.

>>> recall_at_k(["Pointer Networks", "B"], ["pointer networks", "C"], k=5)
0.5
>>> reciprocal_rank(["A", "B", "Pointer Networks"], ["Pointer Networks"])
0.3333333333333333
>>> round(percentile([1.0, 2.0, 3.0, 4.0], 0.9), 2)
3.7
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..citations import hard_failures
from ..corpus import normalize_title
from ..sentences import content_terms, split_sentences

Judge = Callable[[str, str], float]
UNANSWERABLE = "unanswerable"
THRESHOLD = 0.5  # a judge probability at or above this counts as "supported"
VERBATIM = 0.9  # a claim holding this share of one evidence sentence's terms restates it
JUDGE_WINDOW = 3  # evidence sentences the judge reads (a small judge loses its way in more)

#: Every aggregate metric: key -> (label, definition). Reports list them in this order.
DEFINITIONS: dict[str, tuple[str, str]] = {
    "retrieval_recall_at_k": ("Retrieval recall@k", "Mean over answerable items of (gold papers among the top k retrieved) / (gold papers)."),
    "retrieval_mrr": ("Retrieval MRR", "Mean over answerable items of 1 / rank of the first gold paper among the retrieved ones (0 when none is retrieved)."),
    "citation_precision": ("Citation precision", "Mean over answered answerable items that cite at least one paper of (cited papers that are gold) / (cited papers)."),
    "citation_recall": ("Citation recall", "Mean over answered answerable items of (gold papers cited) / (gold papers) (an uncited answer scores 0)."),
    "cited_answer_rate": ("Answers with citations", "Share of answered items that cite at least one paper."),
    "fabricated_citations": ("Fabricated citations", "Number of citations, over all answered items, to a paper that was not retrieved for that question (a number with no source counts). Must be 0."),
    "faithfulness": ("Faithfulness", "Share of answer sentences (all answered items) supported by their cited abstracts: the sentence cites a retrieved paper, every number and name in it occurs in the cited abstracts, and either it restates one abstract sentence (at least 90% of its content terms are in that sentence) or the judge, reading the 3 abstract sentences closest to it, gives p >= 0.5 that they state it. Uncited sentences are unsupported."),
    "faithful_answer_rate": ("Fully faithful answers", "Share of answered items whose every sentence is supported (as in Faithfulness)."),
    "answers_question": ("Answers the question (judge)", "Share of answerable items that were answered and whose answer (citations removed) the judge, reading only the question and the answer, says gives what the question asks for (p >= 0.5). A true but off-question sentence does not count."),
    "keyword_partial": ("Keyword accuracy (partial)", "Mean over answerable items of the share of expected keywords found in the answer (case-insensitive); a refusal scores 0."),
    "keyword_all": ("Keyword accuracy (all)", "Share of answerable items whose answer contains every expected keyword; a refusal scores 0."),
    "refusal_recall": ("Refusal recall", "Share of unanswerable items that were refused."),
    "false_refusal_rate": ("False refusal rate", "Share of answerable items that were refused (not answered: told \"not in the papers\" or shown related evidence)."),
    "false_not_found_rate": ("False \"not in the papers\"", "Share of answerable items told that the papers don't answer them (outcome not_found): a false statement, where a related outcome is only an unverified one."),
    "related_answerable": ("Related outcome, answerable", "Share of answerable items given the related outcome: the closest evidence, cited, marked as not a verified answer."),
    "related_unanswerable": ("Related outcome, unanswerable", "Share of unanswerable items given the related outcome (counted as refused above)."),
    "precision": ("Precision", "Correct answers / answered items: an answered item is correct when it is answerable and contains every keyword (answering an unanswerable item is wrong)."),
    "accuracy": ("Accuracy", "Correct items / all items: answerable, answered and containing every keyword, or unanswerable and refused."),
    "latency_p50": ("Latency p50", "Median seconds per question (retrieval, generation and verification)."),
    "latency_p90": ("Latency p90", "90th percentile of seconds per question (linear interpolation)."),
}
#: Counts reported next to the metrics.
COUNTS = ("n_items", "n_answerable", "n_unanswerable", "n_answered", "n_sentences", "k")
METRIC_KEYS = (*DEFINITIONS, *COUNTS)


# --- per item ---------------------------------------------------------------------------
def distinct_titles(titles: Iterable[str]) -> list[str]:
    """Normalised titles in order of first appearance, without repeats."""
    return list(dict.fromkeys(normalize_title(t) for t in titles if t and t.strip()))


def recall_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int) -> float | None:
    """Share of the gold papers among the first ``k`` distinct retrieved papers."""
    gold_set = set(distinct_titles(gold))
    if not gold_set:
        return None
    return len(gold_set & set(distinct_titles(retrieved)[:k])) / len(gold_set)


def reciprocal_rank(retrieved: Sequence[str], gold: Sequence[str]) -> float | None:
    """1 / rank of the first gold paper in ``retrieved`` (0.0 when absent)."""
    gold_set = set(distinct_titles(gold))
    if not gold_set:
        return None
    for rank, title in enumerate(distinct_titles(retrieved), start=1):
        if title in gold_set:
            return 1.0 / rank
    return 0.0


def citation_precision(cited: Sequence[str], gold: Sequence[str]) -> float | None:
    """Share of the distinct cited papers that are gold; ``None`` when nothing is cited."""
    cited_set = set(distinct_titles(cited))
    if not cited_set:
        return None
    return len(cited_set & set(distinct_titles(gold))) / len(cited_set)


def citation_recall(cited: Sequence[str], gold: Sequence[str]) -> float | None:
    """Share of the gold papers that are cited; ``None`` when there is no gold paper."""
    gold_set = set(distinct_titles(gold))
    if not gold_set:
        return None
    return len(gold_set & set(distinct_titles(cited))) / len(gold_set)


def fabricated_citations(cited: Sequence[str], retrieved: Sequence[str]) -> int:
    """Number of distinct cited papers that are not among the retrieved ones."""
    have = set(distinct_titles(retrieved))
    return sum(1 for t in distinct_titles(cited) if t not in have)


def _squash(text: str) -> str:
    return " ".join((text or "").split()).casefold()


def keyword_partial(answer: str, keywords: Sequence[str]) -> float | None:
    """Share of ``keywords`` found in ``answer`` (case-insensitive, whitespace-collapsed)."""
    if not keywords:
        return None
    text = _squash(answer)
    return sum(1 for kw in keywords if _squash(kw) in text) / len(keywords)


def keyword_all(answer: str, keywords: Sequence[str]) -> bool:
    """Whether every keyword is in ``answer`` (False when there are no keywords)."""
    return bool(keywords) and keyword_partial(answer, keywords) == 1.0


def judge_sentence(claim: str, evidence: str, judge: Judge | None, threshold: float = THRESHOLD) -> dict[str, Any]:
    """ALCE-style verdict on one answer sentence against its cited abstracts (joined).

    Supported when ``evidence`` is not empty, the hard checks pass (every number and name of
    the claim occurs in the evidence), and the claim either restates one evidence sentence
    (``VERBATIM`` of its content terms are in that sentence: entailed by construction) or
    ``judge(claim, window) >= threshold``, where ``window`` is the ``JUDGE_WINDOW`` evidence
    sentences sharing most terms with the claim. The judge is not asked when the hard checks
    already fail.

    >>> judge_sentence("It gets 90.5 BLEU.", "It gets 80.5 BLEU.", lambda c, e: 1.0)["supported"]
    False
    >>> judge_sentence("Our model reaches 28.4 BLEU on WMT.", "Our model reaches 28.4 BLEU on WMT. It is fast.", None)["p"]
    1.0
    """
    if not evidence.strip():
        return {"hard_failures": ["cites no retrieved source"], "p": None, "supported": False}
    failures = hard_failures(claim, evidence)
    if failures:
        return {"hard_failures": failures, "p": None, "supported": False}
    terms = set(content_terms(claim))
    ranked = sorted(split_sentences(evidence), key=lambda s: -len(terms & set(content_terms(s))))
    if len(terms) >= 3 and ranked and len(terms & set(content_terms(ranked[0]))) >= VERBATIM * len(terms):
        return {"hard_failures": [], "p": 1.0, "restates": ranked[0], "supported": True}
    if judge is None:
        return {"hard_failures": [], "p": None, "supported": False}
    window = " ".join(ranked[:JUDGE_WINDOW]) or evidence
    p = min(max(float(judge(claim, window)), 0.0), 1.0)
    return {"hard_failures": [], "p": p, "supported": p >= threshold}


def is_answerable(item: dict) -> bool:
    return item.get("type") != UNANSWERABLE


def outcome(item: dict) -> str:
    """The item's outcome (``rag.types.OUTCOMES``); records without one predate the related
    outcome, so a refusal there is "not_found"."""
    return item.get("outcome") or ("not_found" if item["refused"] else "answered")


def is_correct(item: dict) -> bool:
    """Answerable, answered and holding every keyword; or unanswerable and refused."""
    if not is_answerable(item):
        return bool(item["refused"])
    return not item["refused"] and keyword_all(item.get("answer", ""), item.get("keywords", []))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) with linear interpolation between ranks, like numpy's default."""
    xs = sorted(float(v) for v in values if v is not None)
    if not xs:
        return None
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not ``None``; ``None`` when there are none."""
    xs = [float(v) for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def _share(flags: Iterable[bool]) -> float | None:
    return mean(1.0 if f else 0.0 for f in flags)


# --- aggregate ----------------------------------------------------------------------------
def summarize(items: Sequence[dict], k: int) -> dict[str, Any]:
    """Every metric of :data:`DEFINITIONS` plus the counts of :data:`COUNTS`."""
    answerable = [i for i in items if is_answerable(i)]
    unanswerable = [i for i in items if not is_answerable(i)]
    answered = [i for i in items if not i["refused"]]
    answered_ans = [i for i in answerable if not i["refused"]]
    sentences = [s for i in answered for s in i.get("sentences", [])]
    out: dict[str, Any] = {
        "retrieval_recall_at_k": mean(recall_at_k(i["retrieved_titles"], i["gold_titles"], k) for i in answerable),
        "retrieval_mrr": mean(reciprocal_rank(i["retrieved_titles"], i["gold_titles"]) for i in answerable),
        "citation_precision": mean(citation_precision(i["cited_titles"], i["gold_titles"]) for i in answered_ans),
        "citation_recall": mean(citation_recall(i["cited_titles"], i["gold_titles"]) for i in answered_ans),
        "cited_answer_rate": _share(bool(i["cited_titles"]) for i in answered),
        "fabricated_citations": sum(fabricated_citations(i["cited_titles"], i["retrieved_titles"]) for i in answered),
        "faithfulness": _share(bool(s.get("supported")) for s in sentences),
        "faithful_answer_rate": _share(
            bool(i.get("sentences")) and all(s.get("supported") for s in i["sentences"]) for i in answered),
        "answers_question": None if not any("answers_question" in i for i in answerable) else _share(
            not i["refused"] and bool(i.get("answers_question")) for i in answerable),
        "keyword_partial": mean(0.0 if i["refused"] else keyword_partial(i["answer"], i["keywords"]) for i in answerable),
        "keyword_all": _share(is_correct(i) for i in answerable),
        "refusal_recall": _share(i["refused"] for i in unanswerable),
        "false_refusal_rate": _share(i["refused"] for i in answerable),
        "false_not_found_rate": _share(outcome(i) == "not_found" for i in answerable),
        "related_answerable": _share(outcome(i) == "related" for i in answerable),
        "related_unanswerable": _share(outcome(i) == "related" for i in unanswerable),
        "precision": _share(is_correct(i) for i in answered),
        "accuracy": _share(is_correct(i) for i in items),
        "latency_p50": percentile([i["seconds"] for i in items], 0.5),
        "latency_p90": percentile([i["seconds"] for i in items], 0.9),
        "n_items": len(items),
        "n_answerable": len(answerable),
        "n_unanswerable": len(unanswerable),
        "n_answered": len(answered),
        "n_sentences": len(sentences),
        "k": k,
    }
    return {key: (round(v, 4) if isinstance(v, float) else v) for key, v in out.items()}


def per_type(items: Sequence[dict], k: int) -> dict[str, dict[str, Any]]:
    """:func:`summarize` for each question type, in order of first appearance."""
    types = list(dict.fromkeys(i["type"] for i in items))
    return {t: summarize([i for i in items if i["type"] == t], k) for t in types}


def per_split(items: Sequence[dict], k: int) -> dict[str, dict[str, Any]]:
    """:func:`summarize` for each split (``dev``, ``test``), in order of first appearance."""
    splits = list(dict.fromkeys(i.get("split", "dev") for i in items))
    return {s: summarize([i for i in items if i.get("split", "dev") == s], k) for s in splits}


def format_value(key: str, value: Any) -> str:
    """A metric value for a report table (``None`` -> "n/a")."""
    if value is None:
        return "n/a"
    if key.startswith("latency"):
        return f"{value:.2f} s"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
