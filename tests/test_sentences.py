"""Sentence splitting, term extraction and evidence selection, on edge cases and real abstracts."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.evidence import bm25_scores, cached_embed, select_evidence
from rag.sentences import content_terms, named_terms, numbers_in, split_sentences

from fakes import fake_embed, seed_abstract


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("  \n\t ", []),
        ("One sentence without a period", ["One sentence without a period"]),
        ("We use e.g. dropout. It helps.", ["We use e.g. dropout.", "It helps."]),
        ("We use, i.e. Adam, this. It helps.", ["We use, i.e. Adam, this.", "It helps."]),
        ("Smith et al. Showed it first. We agree.", ["Smith et al. Showed it first.", "We agree."]),
        ("BERT vs. GPT differ here. Yes.", ["BERT vs. GPT differ here.", "Yes."]),
        ("See Fig. 3 for details. Done.", ["See Fig. 3 for details.", "Done."]),
        ("See Sec. 3 and Tab. 2. Then go.", ["See Sec. 3 and Tab. 2.", "Then go."]),
        ("It reaches 28.4 BLEU. It is fast.", ["It reaches 28.4 BLEU.", "It is fast."]),
        ("We release v1.2.3 today. Try it.", ["We release v1.2.3 today.", "Try it."]),
        ("Work by J. R. Smith shows it. We agree.", ["Work by J. R. Smith shows it.", "We agree."]),
        ("We call it dataset A. The results hold.", ["We call it dataset A.", "The results hold."]),
        ("The approach is gradient descent (LR+GD). Recent work agrees.",
         ["The approach is gradient descent (LR+GD).", "Recent work agrees."]),
        ("Does it work? Yes! It does.", ["Does it work?", "Yes!", "It does."]),
        ("The value is approx. three. Fine.", ["The value is approx. three.", "Fine."]),
        ("It is 3.5x faster (p < 0.05). We win.", ["It is 3.5x faster (p < 0.05).", "We win."]),
        ('He said "it works." Then left.', ['He said "it works."', "Then left."]),
        ("It works. [1] It is fast. [2]", ["It works. [1]", "It is fast. [2]"]),
        ("It works.\n[1][2]", ["It works.\n[1][2]"]),
        ("- First point\n- Second point", ["- First point", "- Second point"]),
        ("Para one\n\nPara two", ["Para one", "Para two"]),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_split_covers_the_text(text: str) -> None:
    parts = split_sentences(text)
    assert all(p and p == p.strip() for p in parts)
    assert re.sub(r"\s+", "", "".join(parts)) == re.sub(r"\s+", "", text)


def test_split_real_abstracts() -> None:
    lr = split_sentences(seed_abstract("LR+GD"))
    assert len(lr) == 9 and lr[1].endswith("logistic regression with gradient descent (LR+GD).")
    wild = split_sentences(seed_abstract("Snapshot Serengeti"))
    assert any("(i.e. over 17,000 hours)" in s for s in wild)
    assert any("8.4 years (at 40 hours per week)" in s for s in wild)
    ocr = split_sentences(seed_abstract("SVTR, are widely"))
    assert ocr[0].startswith("Connectionist") and "e.g., SVTR, are widely" in ocr[0]
    patch = split_sentences(seed_abstract("low-rank adaptation (LoRA) to train"))
    assert any(s.startswith("E.g., causing a traffic sign") for s in patch)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("the of and it was", []),
        ("The networks were trained", ["network", "train"]),
        ("LR+GD converges on 3 datasets", ["lr", "gd", "converg", "dataset"]),
        ("Transformers TRANSFORMER transformer", ["transform"] * 3),
    ],
)
def test_content_terms(text: str, expected: list[str]) -> None:
    assert content_terms(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", set()),
        ("GLUE 80.5% and GLUE 90.5 %", {"80.5", "90.5"}),
        ("on 1,000 images and 17,000 hours", {"1000", "17000"}),
        ("3x faster, 10.5× smaller", {"3", "10.5"}),
        ("ranked 2nd of 31st", {"2", "31"}),
        ("GPT-4 and W4A4 and LLaMA-7B and log_2 and v1.2", set()),
        ("as cited [2] and [1, 3] and [Source 4] and (Source 5)", set()),
        ("published in 2017", {"2017"}),
        ("the 3.2-million-image dataset", {"3.2"}),
        ("from 2014-2016", {"2014", "2016"}),
        ("It ends at 28.4.", {"28.4"}),
    ],
)
def test_numbers_in(text: str, expected: set[str]) -> None:
    assert numbers_in(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", set()),
        ("BLEU improves", {"BLEU"}),
        ("The LSTM and the ResNet work", {"LSTM", "ResNet"}),
        ("We beat GPT-4 and LLaMA-7B.", {"GPT-4", "LLaMA-7B"}),
        ("Then LR+GD converges", {"LR+GD"}),
        ("Transformers are strong.", set()),
        ("It beats Transformers.", {"Transformers"}),
        ("It works. However, it fails.", set()),
        ("SpikeLLM cuts WikiText2 perplexity", {"SpikeLLM", "WikiText2"}),
        ("the 3.2-million-image set", set()),
        ("models (e.g. on ImageNet)", {"ImageNet"}),
        ("See [2] and Source 3 in the Paper.", set()),
        ("English-to-German translation", {"German"}),
        ("It translates English-to-German text", {"English", "German"}),
    ],
)
def test_named_terms(text: str, expected: set[str]) -> None:
    assert named_terms(text) == expected


# (question, phrase identifying the seed abstract, text the chosen sentence must contain)
REAL_QUESTIONS = [
    ("What accuracy do the networks reach when identifying animals?", "Snapshot Serengeti",
     "93.8% accuracy"),
    ("How many species do the networks describe?", "Snapshot Serengeti", "48 species"),
    ("What does LR+GD reduce to with large step sizes?", "LR+GD", "batch version of the"),
    ("Why is logistic loss an unreliable metric?", "LR+GD", "unreliable metric of the proximity"),
    ("By how much does SpikeLLM reduce WikiText2 perplexity?", "SpikeLLM", "11.01%"),
    ("How much does the LoRA security patch improve classification accuracy?",
     "low-rank adaptation (LoRA) to train", "78.01%"),
    ("What does SVTRv2 surpass?", "SVTR, are widely", "surpasses most EDTRs"),
]


@pytest.mark.parametrize("embed", [None, fake_embed], ids=["lexical", "with-embed"])
@pytest.mark.parametrize(("question", "paper", "answer"), REAL_QUESTIONS)
def test_select_evidence_finds_the_answer(question, paper, answer, embed) -> None:
    abstract = seed_abstract(paper)
    (best,) = select_evidence(question, abstract, 1, embed=embed)
    assert answer in best
    three = select_evidence(question, abstract, 3, embed=embed)
    assert best in three and len(three) == 3
    sentences = split_sentences(abstract)
    positions = [sentences.index(s) for s in three]  # verbatim sentences, in abstract order
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    ("abstract", "n", "expected"),
    [
        ("", 3, []),
        ("A wins. B loses.", 0, []),
        ("A wins. B loses.", 5, ["A wins.", "B loses."]),
        ("Nothing here. Nothing there. Nothing else.", 1, ["Nothing here."]),  # tie: first
    ],
)
def test_select_evidence_edges(abstract: str, n: int, expected: list[str]) -> None:
    assert select_evidence("Who wins the race?", abstract, n) == expected


def test_bm25_scores_prefer_short_matching_sentences() -> None:
    short, long_, none = bm25_scores(["bleu"], [["bleu"], ["bleu"] + ["x"] * 20, ["code"]])
    assert 1.0 >= short > long_ > none == 0.0
    assert bm25_scores([], [["a"]]) == [0.0]


def test_cached_embed_embeds_each_text_once() -> None:
    calls: list[list[str]] = []
    embed = cached_embed(lambda texts: calls.append(list(texts)) or fake_embed(texts))
    embed(["a b", "c d"])
    embed(["c d", "e f", "a b"])
    assert calls == [["a b", "c d"], ["e f"]]
    assert cached_embed(None) is None
