"""The keyword (BM25) index over every chunk, persisted beside the Chroma collection.

Built with bm25s from the chunks as stored, a page at a time, tokenised as llama-index's
``BM25Retriever`` tokenises them (English stemming and stop words); searched with bm25s
alone (a search imports no llama-index); saved in ``<index_dir>/keyword/<key>/`` (or under
``bm25_dir`` for an index on a Chroma server), where ``key`` names the index version and
size it was built from: the BM25 matrices and the chunk ids, not the chunks' text. Every
write to the index ends by saving the keyword index of what it wrote
(``PaperIndex.writing``), so a process that opens the index loads it, memory-mapped,
instead of reading back and re-tokenising every chunk (about a minute at 100,000 chunks). A
saved copy for another version is never used: a reader that finds none for the version it
sees builds it once (with a progress bar on large indexes) and saves it for the next. bm25s
cannot add documents to a built index, so every save is a full build.

A save is atomic: written to a temporary folder, renamed into place, then older keys are
deleted; a process killed at any point leaves either no folder for the current key (it is
rebuilt) or a complete one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    import Stemmer
    from llama_index.core.schema import TextNode

    from .config import Settings

__all__ = ["KeywordIndex", "build", "carry_over", "keyword_dir", "load", "load_or_build", "save"]

log = logging.getLogger(__name__)

FOLDER = "keyword"
STAMP = "citewise-keyword.json"  # written last: a folder without it is incomplete
SHOWN_BUILD = 50_000  # chunks from which building shows progress (more than ~2 s)


class Chunks(Protocol):
    """What a keyword index is built from: the index's chunks (``rag.store.PaperIndex``)."""

    def count(self) -> int: ...

    def chunk_pages(self) -> Iterator[list[TextNode]]: ...


#: How llama-index's ``BM25Retriever`` splits a query into words (its default), kept here
#: so that a search needs only bm25s and the stemmer, not llama-index.
TOKEN_PATTERN = r"(?u)\b\w\w+\b"


class KeywordIndex(NamedTuple):
    """The BM25 matrices over every chunk (``bm25s.BM25``), with the chunk id of each of its
    documents in order (built together, so a filter mask always lines up with the matrices)."""

    bm25: Any  # bm25s.BM25
    chunk_ids: list[str]

    def search(self, query: str, n: int, mask: list[int] | None = None) -> list[tuple[str, float]]:
        """``(chunk id, BM25 score)`` of the ``n`` best chunks with a positive score, best
        first; ``mask`` (1 per chunk allowed, 0 otherwise) restricts them. The query is
        tokenised and scored as llama-index's ``BM25Retriever`` does."""
        import bm25s
        import numpy as np

        tokens = bm25s.tokenize(query, stemmer=_stemmer(), token_pattern=TOKEN_PATTERN, show_progress=False)
        k = max(1, min(n, len(self.chunk_ids)))
        weights = np.array(mask) if mask else None
        indexes, scores = self.bm25.retrieve(tokens, k=k, show_progress=False, weight_mask=weights)
        return [(self.chunk_ids[int(i)], float(s)) for i, s in zip(indexes[0], scores[0]) if s > 0]


def _stemmer() -> Stemmer.Stemmer:
    import Stemmer

    return Stemmer.Stemmer("english")


def keyword_dir(settings: Settings) -> Path | None:
    """Where the keyword index of ``settings``' index is kept: ``bm25_dir`` when set, else
    ``<index_dir>/keyword`` for a local index, else nowhere (built in memory)."""
    if settings.bm25_dir is not None:
        return Path(settings.bm25_dir).expanduser()
    if settings.chroma_url:
        return None
    return Path(settings.index_dir).expanduser() / FOLDER


def key_of(version: str, count: int) -> str:
    """The folder name of the keyword index built from ``count`` chunks at ``version``."""
    return hashlib.sha256(f"{version}|{count}".encode()).hexdigest()[:20]


def build(index: Chunks) -> KeywordIndex | None:
    """The keyword index of every chunk ``index`` holds now (``None`` when it is empty),
    tokenised as llama-index's ``BM25Retriever`` tokenises nodes (bm25s: English stop words,
    stemming, :data:`TOKEN_PATTERN`; the same scores), but a page of chunks at a time: only
    each chunk's token ids are kept, not every node and its text (about 10 GB at 750,000
    chunks when they were)."""
    import bm25s
    from bm25s.tokenization import Tokenized
    from llama_index.core.schema import MetadataMode
    from tqdm.auto import tqdm

    from .console import is_quiet

    shown = (total := index.count()) >= SHOWN_BUILD and not is_quiet()
    vocab: dict[str, int] = {}
    token_ids: list[list[int]] = []  # each list holds the vocabulary's own int objects
    chunk_ids: list[str] = []
    stemmer = _stemmer()
    with tqdm(total=total, desc="Keyword index", unit="chunk", disable=not shown) as bar:
        for nodes in index.chunk_pages():
            texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
            tokens = bm25s.tokenize(texts, stopwords="english", stemmer=stemmer, token_pattern=TOKEN_PATTERN,
                                    return_ids=False, show_progress=False)
            token_ids.extend([vocab.setdefault(token, len(vocab)) for token in doc] for doc in tokens)
            chunk_ids.extend(node.node_id for node in nodes)
            bar.update(len(nodes))
    if not chunk_ids:
        return None
    bm25 = bm25s.BM25()
    bm25.index(Tokenized(ids=token_ids, vocab=vocab), show_progress=shown)  # bm25s' own bars, on stderr
    return KeywordIndex(bm25, chunk_ids)


def save(keyword: KeywordIndex, folder: Path, version: str, count: int) -> Path:
    """Save ``keyword`` as the index of ``version``/``count`` under ``folder`` (atomically;
    keys saved before are deleted). Returns its folder."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / key_of(version, count)
    if (target / STAMP).is_file():
        return target  # another process saved the same key
    tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=folder))
    try:
        keyword.bm25.save(str(tmp), show_progress=False)
        (tmp / "chunk_ids.json").write_text(json.dumps(keyword.chunk_ids), encoding="utf-8")
        stamp = {"version": version, "count": count, "chunks": len(keyword.chunk_ids)}
        (tmp / STAMP).write_text(json.dumps(stamp), encoding="utf-8")
        _fsync_tree(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # the same key saved meanwhile by another process
            if not (target / STAMP).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in folder.iterdir():  # older keys, and what killed saves left (after an hour)
        if old != target and old.is_dir() and not (old.name.startswith(".saving-") and _age(old) < 3600):
            shutil.rmtree(old, ignore_errors=True)
    return target


def carry_over(folder: Path, before: tuple[str, int], after: tuple[str, int]) -> bool:
    """Re-key the keyword index saved for ``before`` as that of ``after`` (a write that changed
    no chunk); False when there is none to carry."""
    source, target = folder / key_of(*before), folder / key_of(*after)
    try:
        stamp = json.loads((source / STAMP).read_text(encoding="utf-8"))
        if (stamp["version"], stamp["count"]) != tuple(before) or before[1] != after[1]:
            return False
        os.rename(source, target)
    except (OSError, ValueError, KeyError):
        return False
    stamp.update(version=after[0], count=after[1])
    fresh = target / (STAMP + ".tmp")
    fresh.write_text(json.dumps(stamp), encoding="utf-8")
    os.replace(fresh, target / STAMP)
    return True


def load(folder: Path, version: str, count: int) -> KeywordIndex | None:
    """The keyword index saved for ``version``/``count``, memory-mapped; ``None`` when there is
    none (or it cannot be read: it is then deleted, to be rebuilt)."""
    target = folder / key_of(version, count)
    try:
        stamp = json.loads((target / STAMP).read_text(encoding="utf-8"))
        if (stamp["version"], stamp["count"]) != (version, count):
            return None
        import bm25s

        bm25 = bm25s.BM25.load(str(target), mmap=True, show_progress=False)
        chunk_ids = json.loads((target / "chunk_ids.json").read_text(encoding="utf-8"))
        if len(chunk_ids) != stamp["chunks"] or int(bm25.scores["num_docs"]) != len(chunk_ids):
            raise ValueError(f"{len(chunk_ids)} chunk ids for {stamp['chunks']} chunks")
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - a damaged copy is rebuilt, never trusted
        log.warning("the saved keyword index in %s is unreadable (%s); rebuilding it", target, exc)
        shutil.rmtree(target, ignore_errors=True)
        return None
    return KeywordIndex(bm25, chunk_ids)


def load_or_build(index: Chunks, settings: Settings, version: str, count: int) -> KeywordIndex | None:
    """The keyword index of ``index`` at ``version``/``count``: loaded when saved, else built
    and saved (when the folder can be written) for the next process."""
    folder = keyword_dir(settings)
    if folder is not None and count and (found := load(folder, version, count)):
        return found
    return build_and_save(index, folder, version, count)


def build_and_save(index: Chunks, folder: Path | None, version: str, count: int) -> KeywordIndex | None:
    """The keyword index of ``index``, built now and saved as ``version``/``count`` under
    ``folder`` (unless ``None``); a folder that cannot be written is logged, not raised."""
    keyword = build(index)
    if keyword is not None and folder is not None:
        try:
            save(keyword, folder, version, count)
        except OSError as exc:  # e.g. a read-only index folder: searching still works
            log.warning("could not save the keyword index in %s (%s)", folder, exc)
    return keyword


def _age(path: Path) -> float:
    import time

    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
