"""The stock baseline: llama-index's ``CitationQueryEngine`` with its default prompts.

Same index, same embedder, same local model as citewise; only the pipeline differs (dense
top-k chunks, whole chunks in a prompt with a worked example, citations and refusals left
to the model). ``LocalLLM`` wraps our generator as a llama-index ``CustomLLM`` (the prompt
goes in as one user message; the generator applies the chat template). Nothing touches
llama-index's global ``Settings``: the LLM and embedder are passed explicitly.

>>> engine = build_engine(pipeline)                      # doctest: +SKIP
>>> baseline_answer(engine, pipeline, "What is a Ptr-Net?")["refused"]  # doctest: +SKIP
False
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from .citations import clean_answer, is_hedge
from .sentences import split_sentences

CONTEXT_WINDOW = 32768
_EMPTY = re.compile(r"^\s*(?:empty response|none)?\s*\.?\s*$", re.I)
_NONE_HELPFUL = re.compile(r"\bnone of the (?:provided |given )?(?:sources|abstracts|documents)"
                           r"|\bsources? (?:are|is) not helpful|\bNOT FOUND\b", re.I)


def _llm_class():  # noqa: ANN202
    """Defined lazily so importing this module does not import llama-index."""
    from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
    from llama_index.core.llms import CustomLLM
    from llama_index.core.llms.callbacks import llm_completion_callback
    from pydantic import PrivateAttr

    class LocalLLM(CustomLLM):
        """Our local generator behind llama-index's LLM interface (completion only)."""

        context_window: int = CONTEXT_WINDOW
        num_output: int = 160
        model_name: str = "local"
        _generator: Any = PrivateAttr()

        def __init__(self, generator: Any, num_output: int = 160, **kwargs: Any):
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

    return LocalLLM


def local_llm(generator: Any, num_output: int) -> Any:
    """A ``CustomLLM`` that answers with ``generator`` (``complete`` and ``stream_complete``)."""
    return _llm_class()(generator, num_output=num_output)


def build_engine(pipeline: Any) -> Any:
    """``CitationQueryEngine.from_args`` over the pipeline's own vector store, defaults kept."""
    from llama_index.core import VectorStoreIndex
    from llama_index.core.query_engine import CitationQueryEngine

    embedder = pipeline.retriever.embedder
    index = VectorStoreIndex.from_vector_store(pipeline.index.vector_store, embed_model=embedder)
    llm = local_llm(pipeline.generator, pipeline.settings.max_new_tokens)
    return CitationQueryEngine.from_args(index, llm=llm, similarity_top_k=pipeline.settings.top_k)


def is_refusal(text: str) -> bool:
    """Empty, or the model says the sources don't answer (in its first sentence, or only that).

    >>> is_refusal("None of the sources are helpful for this query."), is_refusal("X is Y [1].")
    (True, False)
    """
    text = clean_answer(text or "")
    if _EMPTY.match(text) or _NONE_HELPFUL.search(text[:200]):
        return True
    sentences = [s for s in split_sentences(text) if s.strip()]
    return not sentences or is_hedge(sentences[0]) or all(is_hedge(s) for s in sentences)


def baseline_answer(engine: Any, pipeline: Any, question: str) -> dict[str, Any]:
    """Ask the stock engine; map its response onto the evaluation's shape.

    ``sources[n - 1]`` is the paper of ``response.source_nodes[n - 1]`` (what ``[n]`` cites),
    with its whole abstract for the faithfulness judge.
    """
    t0 = time.perf_counter()
    response = engine.query(question)
    seconds = time.perf_counter() - t0
    text = (getattr(response, "response", None) or "").strip()
    nodes = list(getattr(response, "source_nodes", []) or [])
    pids = [n.node.metadata.get("paper_id", "") for n in nodes]
    firsts = pipeline.index.abstracts([p for p in dict.fromkeys(pids) if p])
    sources = []
    for node, pid in zip(nodes, pids):
        meta = firsts.get(pid, {})
        sources.append({"title": node.node.metadata.get("title", meta.get("title", "")),
                        "abstract": meta.get("abstract") or node.node.get_content()})
    # Echoed "Query: ..." lines and a "Sources:" tail are not part of the answer.
    return {"answer": clean_answer(text), "raw_answer": text, "refused": is_refusal(text),
            "sources": sources, "seconds": seconds}


def baseline_system(pipeline: Any) -> Callable[[str], dict[str, Any]]:
    """``question -> baseline_answer(...)`` over one engine built once."""
    engine = build_engine(pipeline)
    return lambda question: baseline_answer(engine, pipeline, question)
