"""End to end on the real bundled models (no fakes): the default test run includes these."""

from __future__ import annotations

import sys

import pytest

from rag.pipeline import Pipeline
from rag.prompts import REFUSAL

pytestmark = pytest.mark.e2e

NUMERIC = ("What test error on CIFAR-10 did the network found by an RNN controller trained with "
           "reinforcement learning reach?")
NAS_RL = "Neural Architecture Search with Reinforcement Learning"


@pytest.fixture(scope="module")
def real_pipeline(seed_settings, seed_index, embedder):
    from rag.generation import TransformersGenerator

    return Pipeline(seed_settings, generator=TransformersGenerator(seed_settings), embedder=embedder, index=seed_index)


def test_numeric_question_is_answered_with_the_number_and_cited(real_pipeline):
    answer = real_pipeline.ask(NUMERIC)
    assert not answer.refused, answer.to_dict()
    assert "3.65" in answer.text
    assert NAS_RL in [c.title for c in answer.citations]
    assert answer.device == "cpu (int8)"
    for citation in answer.citations:
        source = answer.sources[citation.number - 1]
        assert citation.paper_id == source.paper_id
        assert all(sentence in source.abstract for sentence in citation.evidence)


@pytest.mark.slow  # the default run serves a tiny model the same way: test_scale_out
def test_bundled_model_behind_serve_model_answers_like_the_local_one(real_pipeline, seed_settings, seed_index,
                                                                    embedder, tmp_path):
    """``python -m rag serve-model`` serving the default bundled model, as a lab would run it
    for its app instances; the same pipeline over HTTP answers with the number and the paper."""
    from rag.generation.remote import OpenAIGenerator
    from test_scale_out import free_port, _launch, _stop, _wait_ready

    real_pipeline.generator.load()  # the converted model is cached before the server reads it
    port, log = free_port(), tmp_path / "serve-model.log"
    server = _launch([sys.executable, "-m", "rag", "serve-model", "--port", str(port)], log)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        _wait_ready(server, url + "/models", log)
        settings = seed_settings.with_overrides(openai_url=url)
        remote = Pipeline(settings, generator=OpenAIGenerator(settings), embedder=embedder, index=seed_index)
        answer = remote.ask(NUMERIC)
    finally:
        _stop(server)
    assert answer.device == "remote" and answer.model.endswith(f"@ {url}")
    assert not answer.refused, answer.to_dict()
    assert "3.65" in answer.text
    assert NAS_RL in [c.title for c in answer.citations]


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
