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
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .corpus import normalize_title
from .types import Paper

if TYPE_CHECKING:  # pragma: no cover
    from llama_index.core.node_parser import SentenceSplitter
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
    "category_keys",
    "author_keys",
    "source_files",
    "stream_source",
)

#: Bumped when the stored metadata gains fields: every paper then hashes differently, so the
#: next ingest updates its chunks' metadata in place (nothing is re-embedded).
METADATA_VERSION = 2
_AUTHOR_SEPARATORS = re.compile(r"\s*(?:[,;&]|\band\b)\s*", re.I)
_AFFILIATION = re.compile(r"\([^()]*\)")


def author_key(name: str) -> str:
    """How author names are matched: case, accents and punctuation ignored.
    ``"C.-P. Yuan"`` and ``"c p  YUAN"`` both give ``"c p yuan"``."""
    return normalize_title(name)


def author_keys(authors: str | None) -> list[str]:
    """The matching keys of an authors field such as ``"A. Name, B. Name and C. Name"``
    (affiliations in parentheses dropped, each name once, in order)."""
    names = _AUTHOR_SEPARATORS.split(_AFFILIATION.sub(" ", authors or ""))
    return list(dict.fromkeys(k for k in map(author_key, names) if k))


def paper_hash(paper: Paper) -> str:
    """Hash of everything stored about a paper (metadata changes update the index)."""
    blob = json.dumps([METADATA_VERSION, paper.to_dict()], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def chunk_id(paper_id: str, index: int, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return f"{paper_id}#{index}:{digest}"


def paper_of(chunk_id: str) -> str:
    """The paper id inside a chunk id (``{paper_id}#{index}:{digest}``).

    >>> paper_of("attention-is-all#1:0a1b2c3d4e5f")
    'attention-is-all'
    """
    return chunk_id.rsplit("#", 1)[0]


def make_splitter(chunk_size: int, chunk_overlap: int) -> SentenceSplitter:
    from llama_index.core.node_parser import SentenceSplitter

    return SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)


def chunk_metadata(paper: Paper, index: int, n_chunks: int, digest: str) -> dict:
    """Metadata stored with every chunk: scalars, plus the lists ``category_keys``
    (casefolded) and ``author_keys`` (see :func:`author_key`) that category and author
    filters match element-wise (Chroma's ``$contains``). The first chunk also carries the
    abstract, so the index alone can list papers and show whole abstracts."""
    meta = paper.metadata()
    meta.update(chunk_index=index, n_chunks=n_chunks, paper_hash=digest)
    if paper.categories:
        meta["category_keys"] = list(dict.fromkeys(c.casefold() for c in paper.categories))
    if keys := author_keys(paper.authors):
        meta["author_keys"] = keys
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
