"""Abstracts → sentence-aware chunks (llama-index ``SentenceSplitter``) with stable ids.

A chunk's id is derived from its paper, its position and its text, so re-ingesting an
unchanged corpus produces exactly the same ids (nothing re-embedded, nothing duplicated),
and an edited abstract produces new ids for the chunks that changed.

>>> from rag.types import Paper
>>> nodes = chunk_papers([Paper("p", "A title", "One sentence. Two sentences.")], 200, 40)
>>> nodes[0].node_id.startswith("p#0:"), nodes[0].metadata["title"]
(True, 'A title')
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .types import Paper

if TYPE_CHECKING:  # pragma: no cover
    from llama_index.core.schema import TextNode

#: Metadata kept on chunks but not embedded / not shown to BM25 (the title is both).
HIDDEN_KEYS = (
    "paper_id",
    "chunk_index",
    "n_chunks",
    "paper_hash",
    "abstract",
    "n_authors",
    "published",
    "published_int",
    "year",
    "upvotes",
    "authors",
    "categories",
    "source_files",
)


def paper_hash(paper: Paper) -> str:
    """Hash of everything stored about a paper (metadata changes update the index)."""
    blob = json.dumps(paper.to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def chunk_id(paper_id: str, index: int, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return f"{paper_id}#{index}:{digest}"


def make_splitter(chunk_size: int, chunk_overlap: int):  # noqa: ANN201
    from llama_index.core.node_parser import SentenceSplitter

    return SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)


def chunk_metadata(paper: Paper, index: int, n_chunks: int, digest: str) -> dict:
    """Flat metadata stored with every chunk. The first chunk also carries the abstract,
    so the index alone can list papers and show whole abstracts."""
    meta = paper.metadata()
    meta.update(chunk_index=index, n_chunks=n_chunks, paper_hash=digest)
    if paper.published:
        meta["published_int"] = int(paper.published.replace("-", ""))
    if index == 0:
        meta["abstract"] = paper.abstract
    return meta


def chunk_papers(
    papers: Iterable[Paper], chunk_size: int, chunk_overlap: int
) -> list["TextNode"]:
    """Split every abstract into chunks, each a ``TextNode`` with the paper's metadata."""
    from llama_index.core.schema import TextNode

    splitter = make_splitter(chunk_size, chunk_overlap)
    nodes: list[TextNode] = []
    for paper in papers:
        texts = splitter.split_text(paper.abstract) or [paper.abstract]
        digest = paper_hash(paper)
        for i, text in enumerate(texts):
            nodes.append(
                TextNode(
                    id_=chunk_id(paper.paper_id, i, text),
                    text=text,
                    metadata=chunk_metadata(paper, i, len(texts), digest),
                    excluded_embed_metadata_keys=list(HIDDEN_KEYS),
                    excluded_llm_metadata_keys=list(HIDDEN_KEYS),
                    metadata_template="{value}",
                    text_template="{metadata_str}\n\n{content}",
                )
            )
    return nodes
