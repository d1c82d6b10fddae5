"""citewise inside LlamaIndex: its retrieval as a ``BaseRetriever`` and its verified answers
as a ``BaseQueryEngine``, so code written against llama-index can swap them in.

``CitewiseRetriever`` returns one ``NodeWithScore`` per paper (citewise's hybrid search, fused
per paper): the node's text is the whole abstract, its score the fused relevance, and its
metadata the paper's (``title``, ``paper_id``, ``number``, ``similarity``, date, upvotes...).
It plugs into any retriever slot, e.g. ``RetrieverQueryEngine.from_args(retriever, llm=...)``.

``CitewiseQueryEngine`` answers with the whole pipeline (retrieval, the local model,
citation verification, the three outcomes) and returns a llama-index ``Response``: the
verified answer text (or the refusal), the retrieved papers as ``source_nodes`` (cited ones
first), and in ``metadata`` the outcome, the citations with their supporting sentences and
the standalone question. ``query`` takes a string or a ``QueryBundle``; ``aquery`` runs the
same answer on a worker thread.

>>> from rag import Pipeline, Settings                                # doctest: +SKIP
>>> engine = CitewiseQueryEngine(Pipeline(Settings()))                 # doctest: +SKIP
>>> response = engine.query("What is a pointer network?")             # doctest: +SKIP
>>> response.metadata["outcome"], response.source_nodes[0].metadata["title"]  # doctest: +SKIP
('answered', 'Pointer Networks')
"""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.base.response.schema import Response
from llama_index.core.callbacks import CallbackManager
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from pydantic import PrivateAttr

from .generation import Generator
from .pipeline import Pipeline
from .types import Answer, Filters, Source

__all__ = ["CitewiseQueryEngine", "CitewiseRetriever", "LocalLLM", "local_llm", "source_node", "to_response"]

CONTEXT_WINDOW = 32768  # what LocalLLM tells llama-index (the prompts stay far below)


def source_node(source: Source) -> NodeWithScore:
    """A retrieved paper as a llama-index node: the abstract as text, the fused relevance as
    score, the paper's metadata plus ``title``, ``paper_id``, ``number`` and ``similarity``.
    The node id is the paper id, so the same paper is the same node across questions."""
    metadata = {**(source.metadata or {}), "title": source.title, "paper_id": source.paper_id,
                "number": source.number, "similarity": source.similarity}
    node = TextNode(id_=source.paper_id, text=source.abstract or source.text, metadata=metadata,
                    excluded_embed_metadata_keys=list(metadata),  # an LLM sees title and date only
                    excluded_llm_metadata_keys=[k for k in metadata if k not in ("title", "published")])
    return NodeWithScore(node=node, score=float(source.score))


class CitewiseRetriever(BaseRetriever):
    """citewise's hybrid retrieval (``Pipeline.search``) behind llama-index's retriever
    interface: ``k`` papers, best first, one node each. ``mode`` is hybrid, dense or bm25;
    ``filters`` a ``rag.types.Filters`` (dates, authors, categories, papers)."""

    def __init__(self, pipeline: Pipeline, k: int | None = None, mode: str | None = None,
                 filters: Filters | None = None, callback_manager: CallbackManager | None = None):
        super().__init__(callback_manager=callback_manager)
        self.pipeline, self.k, self.mode, self.filters = pipeline, k, mode, filters

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        sources = self.pipeline.search(query_bundle.query_str, k=self.k, filters=self.filters, mode=self.mode)
        return [source_node(s) for s in sources]


class CitewiseQueryEngine(BaseQueryEngine):
    """citewise's verified, cited answer behind llama-index's query-engine interface (see the
    module docstring for what the ``Response`` holds)."""

    def __init__(self, pipeline: Pipeline, filters: Filters | None = None,
                 callback_manager: CallbackManager | None = None):
        super().__init__(callback_manager=callback_manager)
        self.pipeline, self.filters = pipeline, filters

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {}  # the prompts are citewise's own, fixed (rag.prompts)

    def _query(self, query_bundle: QueryBundle) -> Response:
        return to_response(self.pipeline.ask(query_bundle.query_str, filters=self.filters))

    async def _aquery(self, query_bundle: QueryBundle) -> Response:
        return await asyncio.to_thread(self._query, query_bundle)


class LocalLLM(CustomLLM):
    """A citewise generator behind llama-index's LLM interface (completion and streaming):
    the prompt goes in as one user message, the generator applies its chat template."""

    context_window: int = CONTEXT_WINDOW
    num_output: int = 160
    model_name: str = "local"
    _generator: Generator = PrivateAttr()

    def __init__(self, generator: Generator, num_output: int = 160, **kwargs: Any):
        super().__init__(num_output=num_output, model_name=str(getattr(generator, "name", "local")), **kwargs)
        self._generator = generator

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=self.context_window, num_output=self.num_output,
                           model_name=self.model_name)

    def _messages(self, prompt: str) -> list[dict]:
        return [{"role": "user", "content": prompt}]

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text="".join(self._generator.stream(self._messages(prompt), self.num_output)))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            text = ""
            for piece in self._generator.stream(self._messages(prompt), self.num_output):
                text += piece
                yield CompletionResponse(text=text, delta=piece)

        return gen()


def local_llm(pipeline: Pipeline) -> LocalLLM:
    """The pipeline's local model as a llama-index ``LLM`` (completion and streaming), for
    llama-index components that need one, e.g. ``RetrieverQueryEngine`` around
    ``CitewiseRetriever``: nothing then defaults to a hosted model."""
    return LocalLLM(pipeline.generator, num_output=pipeline.settings.max_new_tokens)


def to_response(answer: Answer) -> Response:
    """A citewise ``Answer`` as a llama-index ``Response`` (cited papers first)."""
    cited = {c.number for c in answer.citations}
    order = sorted(answer.sources, key=lambda s: (s.number not in cited, s.number))
    metadata = {
        "outcome": answer.outcome, "refused": answer.refused,
        "citations": [{"number": c.number, "paper_id": c.paper_id, "title": c.title,
                       "supporting_sentences": list(c.evidence)} for c in answer.citations],
        "standalone_question": answer.standalone_question, "model": answer.model,
    }
    return Response(response=answer.text, source_nodes=[source_node(s) for s in order], metadata=metadata)
