"""The stock baseline: llama-index's ``CitationQueryEngine`` with its default prompts.

Same index, same embedder, same local model as citewise; only the pipeline differs (dense
top-k chunks, whole chunks in a prompt with a worked example, citations and refusals left
to the model), with our generator as its LLM (``rag.llama_index_adapter.LocalLLM``). Nothing touches
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

from ..citations import clean_answer, is_hedge
from ..sentences import split_sentences


_EMPTY = re.compile(r"^\s*(?:empty response|none)?\s*\.?\s*$", re.I)
_NONE_HELPFUL = re.compile(r"\bnone of the (?:provided |given )?(?:sources|abstracts|documents)"
                           r"|\bsources? (?:are|is) not helpful|\bNOT FOUND\b", re.I)


def build_engine(pipeline: Any) -> Any:
    """``CitationQueryEngine.from_args`` over the pipeline's own vector store, defaults kept."""
    from llama_index.core import VectorStoreIndex
    from llama_index.core.query_engine import CitationQueryEngine

    from ..llama_index_adapter import LocalLLM

    embedder = pipeline.embedder.model
    index = VectorStoreIndex.from_vector_store(pipeline.index.vector_store, embed_model=embedder)
    llm = LocalLLM(pipeline.generator, num_output=pipeline.settings.max_new_tokens)
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
