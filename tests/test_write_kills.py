"""Every write path SIGKILLed, then run again: Chroma, the index's bookkeeping and the saved
keyword (BM25) index agree, and BM25 answers exactly as an index built fresh from Chroma.

Four write paths (a first ingest; a re-ingest that changes metadata, adds and drops papers;
a streamed dump; the removal of a dump), each killed at two points: in the middle of its
Chroma writes (at the second ``add``/``update``/``delete`` of the collection), and in the
middle of saving the keyword index (its files written, not yet renamed into place). The
process really receives SIGKILL: it sends it to itself at that point. Then the command a
user would run next finishes the job, and the result is compared with the same write done
without a kill. Real Chroma and real bm25s files; the embedder is a deterministic stand-in
(the store, not the embedding model, is under test; ``test_faults.py`` kills a real one).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rag import keyword_index
from rag.bulk import ingest_dump
from rag.config import Settings
from rag.evaluation import synthetic as make_synthetic_dump
from rag.ingest import ingest
from rag.store import PaperIndex
from test_faults import FAKE_EMBEDDER, fake_embed, pairs
from test_keyword_index import assert_keyword_index_is_current, saved_keys


PATHS = ("ingest", "update", "stream", "remove")
POINTS = ("chroma", "keyword-save")
KILLED_AT = {"ingest": ("add", 2), "update": ("update", 2), "stream": ("add", 3), "remove": ("delete", 2)}

# One warm process forks a child per trial it reads on stdin ("PATH POINT FOLDER"): the child
# prepares the index the path starts from, arms the kill, runs the write, and must not
# survive it. The folders' files (corpus, dump) are written by the test beforehand.
LAUNCHER = FAKE_EMBEDDER + '''
import json, os, signal, sys
from pathlib import Path
import chromadb.api.models.Collection as collection_module
import rag.bulk, rag.keyword_index, rag.store
from rag import keyword_index
from rag.bulk import ingest_dump
from rag.config import Settings
from rag.ingest import ingest
import llama_index.vector_stores.chroma  # imported before forking, never used before it
import bm25s, llama_index.retrievers.bm25
rag.store.ADD_BATCH, rag.bulk.PAGE = 8, 10
KILLED_AT = json.loads(sys.argv[1])

class Embedder:
    def get_text_embedding_batch(self, texts, **_):
        return fake_embed(texts)

def die(*_, **__):
    os.kill(os.getpid(), signal.SIGKILL)

def arm(path, point):
    if point == "keyword-save":  # the new index's files are written, not yet renamed
        rag.keyword_index._fsync_tree = die
        return
    op, nth = KILLED_AT[path]
    original, calls = getattr(collection_module.Collection, op), []
    def counted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == nth:
            die()
        return original(self, *args, **kwargs)
    setattr(collection_module.Collection, op, counted)

def write(path, point, folder):
    settings, emb = Settings(index_dir=folder / "index", corpus=[]), Embedder()
    if path == "update":
        ingest(settings, [folder / "papers.jsonl"], progress=False, embedder=emb)
        os.replace(folder / "papers-edited.jsonl", folder / "papers.jsonl")
    if path == "remove":
        ingest(settings, [folder / "papers.jsonl"], progress=False, embedder=emb)
        ingest_dump(settings, folder / "dump.jsonl", progress=False, embedder=emb)
    arm(path, point)
    if path == "ingest":
        ingest(settings, [folder / "papers.jsonl"], progress=False, embedder=emb)
    elif path == "update":
        ingest(settings, progress=False, embedder=emb)
    elif path == "stream":
        ingest_dump(settings, folder / "dump.jsonl", progress=False, embedder=emb)
    else:
        ingest(settings, remove=[folder / "dump.jsonl"], progress=False, embedder=emb)

print("ready", flush=True)
for line in sys.stdin:
    path, point, folder = line.split(maxsplit=2)
    pid = os.fork()
    if pid == 0:  # a Chroma client is only ever created after the fork
        write(path, point, Path(folder.strip()))
        os._exit(0)  # not killed: the test fails on this status
    print(f"exit {os.waitpid(pid, 0)[1]}", flush=True)
'''


class FakeEmbedder:
    def get_text_embedding_batch(self, texts: list[str], **_: object) -> list[list[float]]:
        return fake_embed(texts)


def _write_papers(path: Path, papers, year: int = 2023) -> None:  # noqa: ANN001
    path.write_text("".join(json.dumps({"id": p.paper_id, "title": p.title, "abstract": p.abstract,
                                        "published": f"{year}-0{1 + i % 9}-15"}) + "\n"
                            for i, p in enumerate(papers)), encoding="utf-8")


def _prepare(folder: Path, path: str, seed_papers) -> None:  # noqa: ANN001
    """The files the write reads: 30 seed papers; for "update", an edited copy (24 of them
    redated, 6 dropped, 6 others added); a 60-paper dump for the streamed paths."""
    folder.mkdir(parents=True)
    _write_papers(folder / "papers.jsonl", seed_papers[:30] if path != "remove" else seed_papers[:5])
    if path == "update":
        _write_papers(folder / "papers-edited.jsonl", seed_papers[6:36], year=2024)
    if path in ("stream", "remove"):
        make_synthetic_dump.write_dump(60, folder / "dump.jsonl", seed=3)


def _finish(folder: Path, path: str) -> Settings:
    """What a user runs after the killed command (the same command; after a killed removal,
    a plain ``ingest``, which deletes what the removal left), in this process."""
    settings, emb = Settings(index_dir=folder / "index", corpus=[]), FakeEmbedder()
    if path == "ingest":
        ingest(settings, [folder / "papers.jsonl"], progress=False, embedder=emb)
    elif path == "stream":
        ingest_dump(settings, folder / "dump.jsonl", progress=False, embedder=emb)
    else:  # update: the corpus file is already the edited one
        ingest(settings, progress=False, embedder=emb)
    return settings


def _reference(folder: Path, path: str, seed_papers) -> Settings:  # noqa: ANN001
    """The same write, not killed."""
    _prepare(folder, path, seed_papers)
    settings, emb = Settings(index_dir=folder / "index", corpus=[]), FakeEmbedder()
    if path in ("ingest", "update", "remove"):
        ingest(settings, [folder / "papers.jsonl"], progress=False, embedder=emb)
    if path == "update":
        os.replace(folder / "papers-edited.jsonl", folder / "papers.jsonl")
        ingest(settings, progress=False, embedder=emb)
    if path in ("stream", "remove"):
        ingest_dump(settings, folder / "dump.jsonl", progress=False, embedder=emb)
    if path == "remove":
        ingest(settings, remove=[folder / "dump.jsonl"], progress=False, embedder=emb)
    return settings


def _state(settings: Settings) -> dict[str, tuple]:
    got = PaperIndex(settings).collection.get(include=["metadatas", "documents"])
    return {cid: (meta["paper_hash"], meta.get("published"), doc)
            for cid, meta, doc in zip(got["ids"], got["metadatas"], got["documents"])}


@pytest.fixture(scope="module")
def launcher():  # noqa: ANN201
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, json.dumps(KILLED_AT)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "RAG_CORPUS": "[]"})
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    proc.stdin.close()
    proc.wait(timeout=60)


def _killed(launcher, folder: Path, path: str, point: str) -> None:  # noqa: ANN001
    launcher.stdin.write(f"{path} {point} {folder}\n")
    launcher.stdin.flush()
    status = int(launcher.stdout.readline().split()[1])
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (path, point, status)


# Each path once in the default run, at alternating points; all eight with -m slow.
TRIALS = [pytest.param(path, point, marks=() if (i + j) % 2 == 0 else pytest.mark.slow)
          for i, path in enumerate(PATHS) for j, point in enumerate(POINTS)]


@pytest.mark.parametrize(("path", "point"), TRIALS)
def test_a_killed_write_run_again_matches_an_unkilled_one(launcher, path, point, tmp_path, seed_papers):
    folder = tmp_path / "killed"
    _prepare(folder, path, seed_papers)
    _killed(launcher, folder, path, point)
    if point == "keyword-save":  # the write itself was done; only its saved copy is missing
        index = PaperIndex(Settings(index_dir=folder / "index", corpus=[]))
        assert keyword_index.key_of(index.version(), index.count()) not in saved_keys(index.settings)
    settings = _finish(folder, path)
    expected = _state(_reference(tmp_path / "reference", path, seed_papers))
    assert _state(settings) == expected
    assert max(pairs(PaperIndex(settings)).values()) == 1
    assert_keyword_index_is_current(settings)
