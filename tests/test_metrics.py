"""Every evaluation metric on hand-made predictions whose values are known."""

from __future__ import annotations

import pytest

from rag.evaluation import metrics as M

PTR, SEQ, GAN, OTHER = "Pointer Networks", "Sequence to Sequence Learning", "Generative Adversarial Nets", "Other Paper"


def item(type_="single", answer="", refused=False, cited=(), retrieved=(), gold=(), keywords=(),
         seconds=1.0, supported=()):
    """One prediction record; ``supported`` gives one sentence verdict per entry."""
    return {"id": "x", "type": type_, "question": "?", "answer": answer, "refused": refused,
            "cited_titles": list(cited), "retrieved_titles": list(retrieved), "gold_titles": list(gold),
            "keywords": list(keywords), "seconds": seconds,
            "sentences": [{"text": "s", "supported": s} for s in supported]}


@pytest.mark.parametrize("retrieved, gold, k, expected", [
    ([PTR, SEQ], [PTR], 5, 1.0),
    ([SEQ, GAN], [PTR], 5, 0.0),
    ([PTR, SEQ], [PTR, GAN], 5, 0.5),
    ([SEQ, GAN, PTR], [PTR], 2, 0.0),  # beyond k
    (["pointer  networks!", SEQ], [PTR], 1, 1.0),  # titles compared normalised
    ([PTR, PTR, SEQ], [PTR, SEQ], 2, 1.0),  # repeated chunks of one paper count once
    ([], [PTR], 5, 0.0),
    ([PTR], [], 5, None),
])
def test_recall_at_k(retrieved, gold, k, expected):
    assert M.recall_at_k(retrieved, gold, k) == expected


@pytest.mark.parametrize("retrieved, gold, expected", [
    ([PTR, SEQ], [PTR], 1.0),
    ([SEQ, GAN, PTR], [PTR], 1 / 3),
    ([SEQ, SEQ, PTR], [PTR], 0.5),
    ([SEQ, GAN, PTR], [PTR, GAN], 0.5),  # the first gold paper counts
    ([SEQ], [PTR], 0.0),
    ([SEQ], [], None),
])
def test_reciprocal_rank(retrieved, gold, expected):
    got = M.reciprocal_rank(retrieved, gold)
    assert got is None if expected is None else got == pytest.approx(expected)


@pytest.mark.parametrize("cited, gold, precision, recall", [
    ([PTR], [PTR], 1.0, 1.0),
    ([PTR, SEQ], [PTR], 0.5, 1.0),
    ([PTR], [PTR, GAN], 1.0, 0.5),
    ([SEQ], [PTR], 0.0, 0.0),
    ([PTR, PTR], [PTR], 1.0, 1.0),  # cited twice is one paper
    ([], [PTR], None, 0.0),  # nothing cited: precision undefined, recall 0
])
def test_citation_precision_and_recall(cited, gold, precision, recall):
    assert M.citation_precision(cited, gold) == precision
    assert M.citation_recall(cited, gold) == recall


@pytest.mark.parametrize("cited, retrieved, expected", [
    ([PTR], [PTR, SEQ], 0),
    ([PTR, GAN], [PTR, SEQ], 1),
    (["[7] (no such source)", PTR], [PTR], 1),
    ([], [PTR], 0),
    ([GAN, OTHER], [], 2),
])
def test_fabricated_citations(cited, retrieved, expected):
    assert M.fabricated_citations(cited, retrieved) == expected


@pytest.mark.parametrize("answer, keywords, partial, all_", [
    ("It reduces to the Perceptron [1].", ["perceptron"], 1.0, True),
    ("It reduces to the perceptron; see Normalized  LR+GD.", ["perceptron", "normalized lr+gd"], 1.0, True),
    ("It reduces to the perceptron.", ["perceptron", "Normalized LR+GD"], 0.5, False),
    ("Nothing relevant.", ["28.4", "BLEU"], 0.0, False),
    ("", ["x"], 0.0, False),
    ("anything", [], None, False),
])
def test_keyword_accuracy(answer, keywords, partial, all_):
    assert M.keyword_partial(answer, keywords) == partial
    assert M.keyword_all(answer, keywords) is all_


@pytest.mark.parametrize("claim, evidence, p, supported, judged", [
    ("It gets 28.4 BLEU.", "The model gets 28.4 BLEU on WMT.", 0.9, True, True),
    ("It gets 28.4 BLEU.", "The model gets 28.4 BLEU on WMT.", 0.5, True, True),  # p >= 0.5
    ("It gets 28.4 BLEU.", "The model gets 28.4 BLEU on WMT.", 0.2, False, True),
    ("It gets 90.5 BLEU.", "The model gets 80.5 BLEU on WMT.", 1.0, False, False),  # hard check
    ("It gets 28.4 BLEU.", "", 1.0, False, False),  # cites no retrieved source
])
def test_judge_sentence(claim, evidence, p, supported, judged):
    asked = []

    def judge(c, e):
        asked.append((c, e))
        return p

    verdict = M.judge_sentence(claim, evidence, judge)
    assert verdict["supported"] is supported
    assert bool(asked) is judged
    assert (verdict["p"] == p) if judged else verdict["p"] is None


@pytest.mark.parametrize("values, q, expected", [
    ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
    ([1.0, 2.0, 3.0, 4.0], 0.9, 3.7),
    ([5.0], 0.9, 5.0),
    ([3.0, 1.0, 2.0], 0.5, 2.0),
    ([], 0.5, None),
])
def test_percentile(values, q, expected):
    assert M.percentile(values, q) == (pytest.approx(expected) if expected is not None else None)


def mixed_run():
    """6 items with every case: answered right/wrong, refused, fabricated, unanswerable."""
    return [
        # 1: answered, correct, cites the gold paper, 2/2 sentences supported
        item("single", "Ptr-Net uses attention as a pointer [1].", cited=[PTR], retrieved=[PTR, SEQ],
             gold=[PTR], keywords=["pointer"], seconds=1.0, supported=[True, True]),
        # 2: answered, half the keywords, cites gold + a wrong paper, 1/2 supported
        item("multi", "Seq2seq gets 34.8 [2].", cited=[SEQ, GAN], retrieved=[GAN, SEQ, PTR],
             gold=[SEQ, PTR], keywords=["34.8", "convex hull"], seconds=2.0, supported=[True, False]),
        # 3: answerable but refused
        item("numeric", "The indexed papers don't answer this.", refused=True, retrieved=[OTHER],
             gold=[GAN], keywords=["GAN"], seconds=3.0),
        # 4: answered without any citation
        item("single", "GANs are generative models.", retrieved=[GAN], gold=[GAN], keywords=["generative"],
             seconds=4.0, supported=[False]),
        # 5: unanswerable, refused (correct)
        item("unanswerable", "The indexed papers don't answer this.", refused=True, retrieved=[PTR], seconds=5.0),
        # 6: unanswerable, answered with a fabricated citation (wrong)
        item("unanswerable", "It is 42 [9].", cited=["[9] (no such source)"], retrieved=[PTR],
             seconds=6.0, supported=[False]),
    ]


EXPECTED = {
    "retrieval_recall_at_k": (1 + 1 + 0 + 1) / 4,
    "retrieval_mrr": (1 + 1 / 2 + 0 + 1) / 4,
    "citation_precision": (1 + 0.5) / 2,  # item 4 cites nothing: not in the precision mean
    "citation_recall": (1 + 0.5 + 0) / 3,
    "cited_answer_rate": 3 / 4,
    "fabricated_citations": 1,  # "[9]" only: item 2's GAN was retrieved
    "faithfulness": 3 / 6,
    "faithful_answer_rate": 1 / 4,
    "keyword_partial": (1 + 0.5 + 0 + 1) / 4,
    "keyword_all": 2 / 4,
    "refusal_recall": 1 / 2,
    "false_refusal_rate": 1 / 4,
    "precision": 2 / 4,
    "accuracy": 3 / 6,
    "latency_p50": 3.5,
    "latency_p90": 5.5,
    "n_items": 6, "n_answerable": 4, "n_unanswerable": 2, "n_answered": 4, "n_sentences": 6, "k": 5,
}


@pytest.mark.parametrize("key", list(EXPECTED))
def test_summarize_mixed_run(key):
    got = M.summarize(mixed_run(), k=5)
    assert set(got) == set(M.METRIC_KEYS)
    assert got[key] == pytest.approx(EXPECTED[key], abs=1e-4)


def test_every_metric_has_a_definition():
    for key, (label, definition) in M.DEFINITIONS.items():
        assert label and len(definition) > 20, key


def test_fabricated_citation_in_an_answerable_item_is_counted():
    run = [item("single", "X [1].", cited=[GAN], retrieved=[PTR], gold=[PTR], keywords=["x"], supported=[True])]
    got = M.summarize(run, k=5)
    assert got["fabricated_citations"] == 1 and got["citation_precision"] == 0.0


def test_no_answered_items():
    run = [item("single", "no", refused=True, retrieved=[PTR], gold=[PTR], keywords=["x"], seconds=2.0),
           item("unanswerable", "no", refused=True, retrieved=[SEQ], seconds=4.0)]
    got = M.summarize(run, k=5)
    for key in ("citation_precision", "citation_recall", "cited_answer_rate", "faithfulness",
                "faithful_answer_rate", "precision"):
        assert got[key] is None, key
    assert got["fabricated_citations"] == 0 and got["n_answered"] == 0 and got["n_sentences"] == 0
    assert got["keyword_partial"] == 0.0 and got["keyword_all"] == 0.0
    assert got["refusal_recall"] == 1.0 and got["false_refusal_rate"] == 1.0
    assert got["accuracy"] == 0.5 and got["retrieval_recall_at_k"] == 1.0
    assert got["latency_p50"] == 3.0


def test_all_refused_unanswerable_only():
    run = [item("unanswerable", refused=True, seconds=1.0) for _ in range(3)]
    got = M.summarize(run, k=5)
    assert got["refusal_recall"] == 1.0 and got["accuracy"] == 1.0
    assert got["false_refusal_rate"] is None and got["keyword_all"] is None
    assert got["retrieval_recall_at_k"] is None and got["precision"] is None


def test_empty_citations_everywhere():
    run = [item("single", "Pointer nets [none].", retrieved=[PTR], gold=[PTR], keywords=["pointer"],
                supported=[False])]
    got = M.summarize(run, k=5)
    assert got["citation_precision"] is None and got["citation_recall"] == 0.0
    assert got["cited_answer_rate"] == 0.0 and got["faithfulness"] == 0.0
    assert got["keyword_all"] == 1.0 and got["precision"] == 1.0


def test_empty_run():
    got = M.summarize([], k=3)
    assert got["n_items"] == 0 and got["accuracy"] is None and got["latency_p90"] is None


def test_per_type_splits_by_type():
    split = M.per_type(mixed_run(), k=5)
    assert list(split) == ["single", "multi", "numeric", "unanswerable"]
    assert split["single"]["n_items"] == 2 and split["single"]["keyword_all"] == 1.0
    assert split["unanswerable"]["refusal_recall"] == 0.5
    assert split["unanswerable"]["retrieval_recall_at_k"] is None
    assert split["numeric"]["false_refusal_rate"] == 1.0


@pytest.mark.parametrize("key, value, text", [
    ("faithfulness", None, "n/a"),
    ("faithfulness", 0.81234, "0.812"),
    ("latency_p50", 6.712, "6.71 s"),
    ("fabricated_citations", 0, "0"),
])
def test_format_value(key, value, text):
    assert M.format_value(key, value) == text


def test_definitions_fit_in_a_markdown_table():
    assert all("|" not in label + definition for label, definition in M.DEFINITIONS.values())


def test_outcomes_are_counted_apart():
    items = [item(refused=False, answer="a [1]."), {**item(refused=True), "outcome": "related"},
             {**item(refused=True), "outcome": "not_found"}, item(refused=True),  # an older record
             {**item(M.UNANSWERABLE, refused=True), "outcome": "related"}, item(M.UNANSWERABLE, refused=True)]
    s = M.summarize(items, k=5)
    assert s["false_refusal_rate"] == 0.75 and s["false_not_found_rate"] == 0.5
    assert s["related_answerable"] == 0.25 and s["related_unanswerable"] == 0.5
    assert s["refusal_recall"] == 1.0
