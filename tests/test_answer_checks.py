"""Focus checks, table-style: values bound to their nouns, question echoes, answer shapes."""

from __future__ import annotations

import pytest

from rag.answer_checks import QuestionShape, binding_failures, has_value, is_echo, novelty
from rag.citations import support_score

VISUAL_GENOME = ("Specifically, our dataset contains over 100K images where each image has an "
                 "average of 21 objects, 18 attributes, and 18 pairwise relationships between objects.")


@pytest.mark.parametrize("sentence, source", [
    ("Each image has 21 objects on average.", VISUAL_GENOME),
    ("The dataset contains over 100K images.", VISUAL_GENOME),
    ("It reaches a 3.65 test error rate.", "Our model achieves a test error rate of 3.65, better."),
    ("The system reaches 93.8% identification accuracy.",
     "Our networks automatically identify animals with over 93.8% accuracy."),
    ("Models with up to 410M parameters were trained.", "We train models with up to 410M parameters."),
    ("It is 1.05x faster.", "It is 0.09 percent better and 1.05x faster than before."),
    ("It was published in 2017 by Google.", "In 2017 a team at Google released it."),
    ("ResNet-50 weights come out in one pass.", "All weights of ResNet-50 in one forward pass."),
    ("Accuracy is 3.65.", "Our model achieves a test error rate of 3.65."),  # no noun after the value
])
def test_values_bound_as_in_the_source_pass(sentence, source):
    assert binding_failures(sentence, source) == []


@pytest.mark.parametrize("sentence, source, noun", [
    ("An image contains approximately 100K objects.", VISUAL_GENOME, "objects"),
    ("The dataset has 21 images.", VISUAL_GENOME, "images"),
    ("FNet uses 80% less memory.", "FNet reaches 92% of the accuracy and trains 80% faster on GPUs.",
     "less"),
])
def test_values_moved_to_another_noun_fail(sentence, source, noun):
    failures = binding_failures(sentence, source)
    assert len(failures) == 1 and failures[0].endswith(f"not {noun}")


def test_a_copied_but_rebound_value_is_not_supported():
    result = support_score("An image contains approximately 100K objects.", VISUAL_GENOME)
    assert result.score == 0.0 and not result.passed
    assert "100K" in result.reasons[0]


@pytest.mark.parametrize("question, sentence, echo", [
    ("In the limit of unbounded width, which three decision rules can a network implement?",
     "In the limit of unbounded width, a network can implement three decision rules.", True),
    ("Which three decision rules can a wide network implement?",
     "They implement nearest neighbor, majority vote and singular kernel rules.", False),
    ("What CIFAR-10 accuracy was obtained?", "The CIFAR-10 accuracy was obtained [1].", True),
    ("What CIFAR-10 accuracy was obtained?", "It obtained 60% CIFAR-10 accuracy.", False),
])
def test_echoes_of_the_question_are_recognised(question, sentence, echo):
    assert is_echo(question, sentence) is echo


def test_novelty_counts_new_terms_and_values():
    assert novelty("What accuracy?", "") == 0.0
    assert novelty("What accuracy?", "Accuracy of 93%.") == 0.5


@pytest.mark.parametrize("question, value, yes_no, multi, parts", [
    ("How many objects does an image contain on average?", True, False, False, 1),
    ("What top-5 test error on ImageNet did the networks reach?", True, False, False, 1),
    ("By how much did training speed up?", True, False, False, 1),
    ("Which architecture outputs positions of its input?", False, False, False, 1),
    ("Does a next-token predictor learn word classes?", False, True, False, 1),
    ("Which papers edit models with task vectors, and how does each combine them?", False, False, True, 2),
    ("What does it reduce to, and what remedy do the authors propose?", False, False, False, 2),
])
def test_question_shapes(question, value, yes_no, multi, parts):
    shape = QuestionShape.of(question)
    assert (shape.wants_value, shape.yes_no, shape.multi, shape.parts) == (value, yes_no, multi, parts)


def test_a_value_question_needs_a_value_other_than_a_year():
    shape = QuestionShape.of("How many parameters does the largest model have?")
    assert not shape.fits("The model was released in 2023.")
    assert shape.fits("The largest model has 16B parameters.")
    assert has_value("a 3.7B model") and not has_value("no value here")
