"""Corpus files → index: read and validate everything first, then sync the index.

Which files make up the corpus is remembered by the index itself (the settings' default
corpus, plus every path given to ``ingest``), so ``python -m rag ingest`` with no argument
re-syncs them all: edited abstracts are re-embedded, removed papers leave the index.
A file that fails to parse stops the ingest *before* anything is written, so nothing
already indexed is lost.

>>> report = ingest(Settings(index_dir=tmp), ["my_abstracts.jsonl"])   # doctest: +SKIP
>>> report.summary()                                                    # doctest: +SKIP
'497 papers, 1364 chunks: 12 added, 0 updated, 0 removed in 1.9 s'
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from .config import Settings
from .errors import CorpusError, StoreError
from .store import PaperIndex, SyncReport, portable_path, resolve_stored_path


def corpus_paths(index: PaperIndex, settings: Settings, extra: Sequence[Path] = ()) -> list[str]:
    """The registered corpus sources plus ``extra`` (portable, de-duplicated, in order)."""
    registered = index.sources() or [portable_path(p) for p in settings.corpus]
    for path in extra:
        if not Path(path).exists():
            raise CorpusError(f"{path}: no such file or folder. Check the path and try again.")
        stored = portable_path(Path(path))
        if stored not in registered:
            registered.append(stored)
    return registered


def ingest(
    settings: Settings,
    paths: Sequence[Path | str] = (),
    rebuild: bool = False,
    remove: Sequence[Path | str] = (),
    progress: bool = True,
    embedder=None,  # noqa: ANN001
) -> SyncReport:
    """Add ``paths`` to the corpus (if any) and bring the index in line with it."""
    from .corpus import load_corpus

    if rebuild:
        _drop_index(settings)
    index = PaperIndex(settings, embedder=embedder, create=True)
    sources = corpus_paths(index, settings, [Path(p) for p in paths])
    for path in remove:
        stored = portable_path(Path(path))
        if stored not in sources:
            raise CorpusError(
                f"{path} is not part of the indexed corpus; `python -m rag sources` lists it."
            )
        sources.remove(stored)
    if not sources:
        raise CorpusError(
            "The corpus would hold no paper; add files with `python -m rag ingest PATH`."
        )
    missing = [s for s in sources if not resolve_stored_path(s).exists()]
    if missing:
        raise CorpusError(
            f"Corpus source {missing[0]} no longer exists. Restore it, or drop it with "
            f"`python -m rag ingest --remove {missing[0]}`."
        )
    corpus = load_corpus([resolve_stored_path(s) for s in sources])
    if not corpus.papers:
        raise CorpusError("The corpus holds no paper; add files with `python -m rag ingest PATH`.")
    report = index.sync(corpus.papers, progress=progress)
    index.set_sources(sources)
    report.warnings = list(corpus.warnings)
    return report


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
