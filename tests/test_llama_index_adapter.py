"""citewise inside LlamaIndex (``rag.llama_index_adapter``): real llama-index objects over the
real seed index; the README's snippet run as written, on the real default model."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re

import pytest
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import Response
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.tools import QueryEngineTool

from fakes import ExtractiveGenerator
from rag.config import PROJECT_ROOT
from rag.llama_index_adapter import CitewiseQueryEngine, CitewiseRetriever, local_llm, source_node
from rag.pipeline import Pipeline
from rag.types import Filters

POINTER = "Which architecture outputs positions in its input sequence?"


@pytest.fixture(scope="module")
def pipeline(seed_settings, seed_index, embedder):
    return Pipeline(seed_settings, generator=ExtractiveGenerator(), embedder=embedder, index=seed_index)


def test_the_retriever_is_citewise_search_one_node_per_paper(pipeline):
    retriever = CitewiseRetriever(pipeline, k=4)
    assert isinstance(retriever, BaseRetriever)
    nodes = retriever.retrieve(POINTER)
    expected = pipeline.search(POINTER, k=4)
    assert [n.node.node_id for n in nodes] == [s.paper_id for s in expected]
    assert [n.score for n in nodes] == pytest.approx([s.score for s in expected])
    top = nodes[0]
    assert top.metadata["title"] == "Pointer Networks" and top.metadata["number"] == 1
    assert top.node.get_content() == expected[0].abstract
    assert "Pointer Networks" in top.node.get_content(metadata_mode="llm")  # an LLM sees the title
    assert len({n.metadata["paper_id"] for n in nodes}) == 4


def test_the_retriever_passes_mode_and_filters(pipeline):
    dense = CitewiseRetriever(pipeline, k=3, mode="dense").retrieve(POINTER)
    assert [n.node.node_id for n in dense] == [s.paper_id for s in pipeline.search(POINTER, k=3, mode="dense")]
    recent = CitewiseRetriever(pipeline, k=5, filters=Filters(date_from="2030-01-01")).retrieve(POINTER)
    assert recent == []


def test_the_query_engine_returns_the_verified_answer_as_a_response(pipeline):
    engine = CitewiseQueryEngine(pipeline)
    assert isinstance(engine, BaseQueryEngine)
    response = engine.query(POINTER)
    answer = pipeline.ask(POINTER)
    assert isinstance(response, Response) and response.response == answer.text == str(response)
    assert response.metadata["outcome"] == answer.outcome == "answered"
    cited = response.metadata["citations"]
    assert cited and cited[0]["title"] == "Pointer Networks"
    assert all(s in response.source_nodes[0].node.get_content() for s in cited[0]["supporting_sentences"])
    assert response.source_nodes[0].metadata["number"] in {c["number"] for c in cited}  # cited first
    assert asyncio.run(engine.aquery(POINTER)).response == answer.text


def test_a_refusal_is_a_response_that_says_so(pipeline):
    response = CitewiseQueryEngine(pipeline).query("What hydration should a sourdough starter have?")
    assert response.metadata["refused"] and response.metadata["outcome"] in ("related", "not_found")
    assert response.metadata["citations"] == [] or response.metadata["outcome"] == "related"


def test_the_query_engine_works_as_a_llama_index_tool(pipeline):
    tool = QueryEngineTool.from_defaults(CitewiseQueryEngine(pipeline), name="papers",
                                         description="Cited answers from research paper abstracts.")
    output = tool.call(POINTER)
    assert output.raw_output.metadata["outcome"] == "answered"
    assert "[1]" in output.content


def test_stock_retriever_query_engine_around_the_retriever_uses_the_local_model(pipeline):
    """llama-index's own ``RetrieverQueryEngine`` with citewise's retriever and the local model
    (here the extractive stand-in): it synthesises from citewise's nodes, never a hosted LLM."""
    engine = RetrieverQueryEngine.from_args(CitewiseRetriever(pipeline, k=3), llm=local_llm(pipeline))
    response = engine.query(POINTER)
    assert [n.metadata["title"] for n in response.source_nodes][0] == "Pointer Networks"
    assert pipeline.generator.prompts and "Pointer" in str(pipeline.generator.prompts[-1])


def test_source_node_keeps_the_paper_metadata(pipeline):
    source = pipeline.search(POINTER, k=1)[0]
    node = source_node(source)
    assert node.node.node_id == source.paper_id and node.score == source.score
    assert {k: node.metadata[k] for k in source.metadata} == source.metadata


@pytest.mark.e2e
def test_the_readme_snippet_runs_as_written(seed_settings, seed_index, monkeypatch):
    """The README's LlamaIndex snippet, verbatim, on the real default model and the seed index."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"\*\*LlamaIndex\*\*.*?```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.setenv("RAG_INDEX_DIR", str(seed_settings.index_dir))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "README.md", "exec"), {})
    printed = out.getvalue().splitlines()
    assert printed[0].startswith("answered ") and "[1]" in printed[0], printed
    titles = [line for line in printed[1:] if re.match(r"-?\d+\.\d\d ", line)]
    assert titles and titles[0].endswith("Pointer Networks"), printed
    assert len(printed) > 1 + len(titles), printed  # the stock engine's answer follows
