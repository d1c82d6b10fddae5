"""End to end on the real bundled models (no fakes): the default test run includes these."""

from __future__ import annotations

import pytest

from rag.pipeline import Pipeline
from rag.prompts import REFUSAL

pytestmark = pytest.mark.e2e

HARDWARE_AWARE = "A Hardware-Aware System for Accelerating Deep Neural Network Optimization"


@pytest.fixture(scope="module")
def real_pipeline(seed_settings, seed_index, embedder):
    from rag.generation import TransformersGenerator

    return Pipeline(seed_settings, generator=TransformersGenerator(seed_settings), embedder=embedder, index=seed_index)


def test_numeric_question_is_answered_with_the_number_and_cited(real_pipeline):
    answer = real_pipeline.ask(
        "How much faster than a Bayesian-optimisation search does the system that extracts "
        "device-specialised sub-networks from a pre-trained super-network find its results?"
    )
    assert not answer.refused, answer.to_dict()
    assert "8x" in answer.text
    assert HARDWARE_AWARE in [c.title for c in answer.citations]
    assert answer.device == "cpu (int8)"
    for citation in answer.citations:
        source = answer.sources[citation.number - 1]
        assert citation.paper_id == source.paper_id
        assert all(sentence in source.abstract for sentence in citation.evidence)


def test_question_no_abstract_answers_is_refused(real_pipeline):
    answer = real_pipeline.ask("What hydration percentage should a sourdough bread starter have?")
    assert answer.refused and answer.text == REFUSAL
    assert answer.citations == []


@pytest.mark.slow
def test_near_miss_detail_is_not_invented(real_pipeline):
    """The paper is indexed, but its abstract gives no parameter count."""
    from rag.sentences import numbers_in

    answer = real_pipeline.ask("How many parameters does the Titans long-term memory model have in total?")
    assert all(1 <= c.number <= len(answer.sources) for c in answer.citations)
    if not answer.refused:  # whatever survived, no number in it is invented
        cited = " ".join(answer.sources[c.number - 1].abstract for c in answer.citations)
        assert numbers_in(answer.text) <= numbers_in(cited)
