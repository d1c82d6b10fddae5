"""Readers see writes from other processes: a search in a long-lived process (the app's)
finds papers that a separate ``python -m rag ingest`` added after it opened the index.

Chroma keeps one in-memory vector index per folder and process; without the version token
(``PaperIndex.version``/``refresh``) the reader's dense search never saw the new paper while
its count did, and the keyword index was only rebuilt on a change of size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.config import PROJECT_ROOT, Settings
from rag.retrieval import Retriever
from rag.store import PaperIndex

PAPERS = [
    {"title": "Gadget Graphs", "abstract": "We study gadget graphs. Gadget graphs have no widgets."},
    {"title": "Sprocket Scaling Laws", "abstract": "Sprockets scale with data. Loss falls as a power law."},
]
NEW = {"title": "Quokka Routing for Mesh Networks",
       "abstract": "We present QuokkaRoute, a routing protocol for wireless mesh networks. "
                   "QuokkaRoute cuts packet loss by 41% on a 60-node testbed."}


def write(path: Path, papers: list[dict]) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in papers), encoding="utf-8")
    return path


def ingest_elsewhere(settings: Settings, *paths: Path) -> None:
    """``python -m rag ingest`` in its own process, as a user would run it beside the app."""
    subprocess.run([sys.executable, "-m", "rag", "ingest", "--quiet", "--index-dir",
                    str(settings.index_dir), *map(str, paths)], check=True, cwd=PROJECT_ROOT,
                   env=dict(os.environ), capture_output=True, timeout=600)


@pytest.fixture()
def small(tmp_path: Path, embedder) -> tuple[Settings, Path]:  # noqa: ANN001
    from rag.ingest import ingest

    corpus = write(tmp_path / "base.jsonl", PAPERS)
    settings = Settings(index_dir=tmp_path / "index", corpus=[corpus])
    ingest(settings, progress=False, embedder=embedder)
    return settings, tmp_path


def test_a_reader_finds_papers_another_process_ingested(small, embedder) -> None:  # noqa: ANN001
    settings, folder = small
    index = PaperIndex(settings, embedder=embedder)
    retriever = Retriever(index, settings, embedder)
    question = "Which routing protocol cuts packet loss in wireless mesh networks?"
    before = retriever.search(question, k=3, mode="dense")
    assert "Quokka Routing for Mesh Networks" not in [s.title for s in before]
    version = index.version()

    ingest_elsewhere(settings, write(folder / "new.jsonl", [NEW]))

    assert index.version() != version
    for mode in ("dense", "bm25", "hybrid"):
        hits = retriever.search(question, k=3, mode=mode)
        assert hits and hits[0].title == NEW["title"], (mode, [h.title for h in hits])
    assert not index.refresh()  # seen now: nothing more to reopen


def test_own_writes_do_not_reopen_the_index(small, embedder) -> None:  # noqa: ANN001
    settings, _ = small
    index = PaperIndex(settings, embedder=embedder)
    client = index._client
    with index.writing():
        pass
    assert index.version().startswith("written-")
    assert not index.refresh() and index._client is client


def test_an_interrupted_write_leaves_a_changed_version(small, embedder) -> None:  # noqa: ANN001
    settings, _ = small
    reader, writer = PaperIndex(settings, embedder=embedder), PaperIndex(settings, embedder=embedder)
    with pytest.raises(RuntimeError), writer.writing():
        raise RuntimeError("killed mid-write")
    assert reader.refresh()
