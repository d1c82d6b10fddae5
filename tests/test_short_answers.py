"""Bare-value answers expanded to the one evidence sentence they come from (table-style)."""

from __future__ import annotations

import pytest

from rag.short_answers import expand_short_answer, is_yes_no_question, yes_no_evidence

LINES = [
    (1, "Our CIFAR-10 model achieves a test error rate of 3.65, which is 0.09 percent better."),
    (1, "It was trained for 22,400 GPU-hours."),
    (2, "A ViT-H reaches 83.0% zero-shot accuracy on ImageNet."),
    (3, "Animals are identified with over 93.8% accuracy; 99.3% of the data is automated."),
    (3, "Another model also reaches 83.0% on a different benchmark."),
    (4, "We train Transformer language models with up to 410M parameters."),
]


@pytest.mark.parametrize(("draft", "question", "expected"), [
    ("3.65", "What test error?", "Our CIFAR-10 model achieves a test error rate of 3.65, which is 0.09 percent better. [1]"),
    ("[1] 3.65", "What test error?", "Our CIFAR-10 model achieves a test error rate of 3.65, which is 0.09 percent better. [1]"),
    ("Over 93.8%", "What accuracy?", "Animals are identified with over 93.8% accuracy; 99.3% of the data is automated. [3]"),
    ("[4] 410M", "Up to what size?", "We train Transformer language models with up to 410M parameters. [4]"),
    ("22,400 GPU-hours [1]", "How many GPU-hours?", "It was trained for 22,400 GPU-hours. [1]"),
    # unchanged: a full sentence, no number, absent, ambiguous, or the wrong kind of value
    ("The error rate is 3.65 [1].", "What test error?", "The error rate is 3.65 [1]."),
    ("ResNet [1]", "Which model?", "ResNet [1]"),
    ("4.71", "What test error?", "4.71"),
    ("83.0%", "What accuracy?", "83.0%"),
    ("[1] 93.8%", "How many GPU-hours did it take?", "[1] 93.8%"),
    ("3.6", "What test error?", "3.6"),  # a prefix of 3.65 is not 3.65
    ("", "What?", ""),
])
def test_expand_short_answer(draft: str, question: str, expected: str) -> None:
    assert expand_short_answer(draft, question, LINES) == expected


@pytest.mark.parametrize(("question", "expected"), [
    ("Does a network trained to predict the next token learn parts of speech?", True),
    ("Is there a way to train GNNs without backpropagation?", True),
    ("When sequence models learn Boolean functions in context, do attention-free models keep up?", True),
    ("Can very deep networks match ResNets without identity shortcuts", True),
    ("What test error did the network reach?", False),
    ("Which papers build on CTC alignments?", False),
    ("When a classifier is run with huge learning rates, what algorithm does it turn into?", False),
    ("How many GPU-hours did it take?", False),
    ("Isolation forests: what do they detect?", False),
])
def test_is_yes_no_question(question: str, expected: bool) -> None:
    assert is_yes_no_question(question) is expected


@pytest.mark.parametrize(("draft", "question", "expected"), [
    ("Yes.", "Does it get 3.65?", "Our CIFAR-10 model achieves a test error rate of 3.65, which is 0.09 percent better. [1]"),
    ("[2] No, it does not.", "Is it fast?", "Our CIFAR-10 model achieves a test error rate of 3.65, which is 0.09 percent better. [1]"),
    ("No", "Can it count?", "Our CIFAR-10 model achieves a test error rate of 3.65, which is 0.09 percent better. [1]"),
    # not a bare yes/no, or not a yes/no question: nothing to offer
    ("It gets 3.65 [1].", "Does it get 3.65?", None),
    ("Yesterday it ran.", "Did it run?", None),
    ("Yes.", "What test error?", None),
])
def test_yes_no_evidence(draft: str, question: str, expected: str | None) -> None:
    assert yes_no_evidence(draft, question, LINES) == expected


def test_yes_no_evidence_needs_evidence() -> None:
    assert yes_no_evidence("Yes.", "Does it work?", []) is None
