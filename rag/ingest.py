"""Corpus files → index: read and validate everything first, then sync the index.

Which files make up the corpus is remembered by the index itself (the settings' default
corpus, plus every path given to ``ingest``), so ``python -m rag ingest`` with no argument
re-syncs them all: edited abstracts are re-embedded, removed papers leave the index.
A file that fails to parse stops the ingest *before* anything is written, so nothing
already indexed is lost.

Large dumps registered with ``python -m rag ingest --stream FILE`` (:mod:`rag.bulk`) are
kept apart: they are never loaded whole; ``ingest`` re-streams one only when its file
changed or its last run was cut short, and ``remove`` drops its chunks.

>>> report = ingest(Settings(index_dir=tmp), ["my_abstracts.jsonl"])   # doctest: +SKIP
>>> report.summary()                                                    # doctest: +SKIP
'497 papers, 1364 chunks: 12 added, 0 updated, 0 removed in 1.9 s'
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Settings
from .errors import CorpusError, StoreError
from .store import PaperIndex, SyncReport, portable_path, resolve_stored_path

if TYPE_CHECKING:  # pragma: no cover
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from .embedding import Embedder


def corpus_paths(index: PaperIndex, settings: Settings, extra: Sequence[Path] = ()) -> list[str]:
    """The registered corpus sources plus ``extra`` (portable, de-duplicated, in order)."""
    registered = index.registered_corpus_files()
    if registered is None:  # never registered: the settings' default corpus
        registered = [portable_path(p) for p in settings.corpus]
    streams = index.streamed_dumps()
    for path in extra:
        if not Path(path).exists():
            raise CorpusError(f"{path}: no such file or folder. Check the path and try again.")
        stored = portable_path(Path(path))
        if stored in streams:
            raise CorpusError(f"{stored} is a streamed source; update it with "
                              f"`python -m rag ingest --stream {stored}`.")
        if stored not in registered:
            registered.append(stored)
    return registered


def ingest(
    settings: Settings,
    paths: Sequence[Path | str] = (),
    rebuild: bool = False,
    remove: Sequence[Path | str] = (),
    progress: bool = True,
    embedder: Embedder | BaseEmbedding | None = None,
) -> SyncReport:
    """Add ``paths`` to the corpus (if any) and bring the index in line with it: the
    corpus sources are read whole and synced, then registered dumps are brought up to date
    (see :mod:`rag.bulk`). Everything is checked before anything is written."""
    from .bulk import refresh_dumps, remove_dump
    from .corpus import Corpus, load_corpus

    if rebuild:
        _drop_index(settings)
    index = PaperIndex(settings, embedder=embedder, create=True)
    sources = corpus_paths(index, settings, [Path(p) for p in paths])
    streams = list(index.streamed_dumps())
    dropped = []
    for path in remove:
        stored = portable_path(Path(path))
        if stored in streams:
            streams.remove(stored)
            dropped.append(stored)
        elif stored in sources:
            sources.remove(stored)
        else:
            raise CorpusError(
                f"{path} is not part of the indexed corpus; `python -m rag sources` lists it."
            )
    if not sources and not streams:
        raise CorpusError(
            "The corpus would hold no paper; add files with `python -m rag ingest PATH`."
        )
    missing = [s for s in sources + streams if not resolve_stored_path(s).exists()]
    if missing:
        raise CorpusError(
            f"Corpus source {missing[0]} no longer exists. Restore it, or drop it with "
            f"`python -m rag ingest --remove {missing[0]}`."
        )
    corpus = load_corpus([resolve_stored_path(s) for s in sources]) if sources else Corpus()
    if sources and not corpus.papers:
        raise CorpusError("The corpus holds no paper; add files with `python -m rag ingest PATH`.")
    removed = sum(remove_dump(index, stored) for stored in dropped)
    report = index.sync(corpus.papers, progress=progress)
    index.set_corpus_files(sources)
    report.removed += removed
    report.warnings = list(corpus.warnings)
    for dump in refresh_dumps(index, progress=progress):
        report = combined(report, dump)
    return report


def combined(a: SyncReport, b: SyncReport) -> SyncReport:
    """Two reports as one (counts and times added, warnings joined)."""
    return SyncReport(
        papers=a.papers + b.papers, chunks=a.chunks + b.chunks, added=a.added + b.added,
        updated=a.updated + b.updated, removed=a.removed + b.removed,
        seconds=a.seconds + b.seconds, warnings=[*a.warnings, *b.warnings],
    )


def _drop_index(settings: Settings) -> None:
    """Delete this settings' collection (or a corrupted local index folder entirely)."""
    if settings.chroma_url:
        from .store import collection_name, open_client

        client = open_client(settings, create=True)
        try:
            client.delete_collection(collection_name(settings))
        except Exception:  # noqa: BLE001 - nothing to delete
            pass
        return
    folder = Path(settings.index_dir)
    if not folder.exists():
        return
    if not (folder / "chroma.sqlite3").exists() and any(folder.iterdir()):
        raise StoreError(
            f"{folder} does not look like an index; refusing to delete it. Remove it by hand "
            "or choose another RAG_INDEX_DIR."
        )
    for child in folder.iterdir():
        if child.name in {"README.md", ".gitkeep"}:
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
