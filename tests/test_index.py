"""The persistent Chroma index: naming, idempotent and incremental sync, crash safety,
and clear errors for missing, foreign or corrupted index folders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import replace

import pytest

from rag.chunking import chunk_papers
from rag.config import Settings
from rag.errors import CorpusError, StoreError
from rag.ingest import ingest
from rag.store import PaperIndex, collection_name


class CountingEmbedder:
    """Wraps the real embedder and counts how many texts it embedded."""

    def __init__(self, inner):
        self.inner = inner
        self.embedded = 0

    def get_text_embedding_batch(self, texts, **kw):
        self.embedded += len(texts)
        return self.inner.get_text_embedding_batch(texts, **kw)

    def get_query_embedding(self, text):
        return self.inner.get_query_embedding(text)


def _pairs(index: PaperIndex) -> Counter:
    got = index.collection.get(include=["metadatas"])
    return Counter((m["paper_id"], m["chunk_index"]) for m in got["metadatas"])


def test_collection_name_encodes_embedder_and_chunking():
    a = collection_name(Settings(chunk_size=200, chunk_overlap=40))
    b = collection_name(Settings(chunk_size=300, chunk_overlap=40))
    assert a != b
    assert "all-minilm-l6-v2" in a and "c200" in a and "o40" in a
    assert 3 <= len(a) <= 512


def test_sync_is_idempotent_and_incremental(tmp_path, seed_papers, embedder):
    settings = Settings(index_dir=tmp_path / "idx")
    papers = seed_papers[:12]
    counting = CountingEmbedder(embedder)
    index = PaperIndex(settings, embedder=counting, create=True)
    expected = len(chunk_papers(papers, settings.chunk_size, settings.chunk_overlap))

    first = index.sync(papers, progress=False)
    assert (first.added, first.removed) == (expected, 0)
    assert index.count() == expected == counting.embedded

    again = index.sync(papers, progress=False)
    assert (again.added, again.updated, again.removed) == (0, 0, 0)
    assert counting.embedded == expected  # nothing re-embedded

    # An edited abstract re-embeds only that paper's changed chunks.
    edited = replace(papers[0], abstract=papers[0].abstract + " We also release code.")
    third = index.sync([edited, *papers[1:]], progress=False)
    assert 1 <= third.added <= 2 and third.removed == third.added
    assert counting.embedded == expected + third.added

    # Metadata-only change: updated in place, not re-embedded.
    upvoted = replace(papers[1], upvotes=99)
    fourth = index.sync([edited, upvoted, *papers[2:]], progress=False)
    assert fourth.added == 0 and fourth.updated >= 1
    assert counting.embedded == expected + third.added
    assert next(p for p in index.papers() if p.paper_id == upvoted.paper_id).upvotes == 99

    # Papers removed from the corpus leave the index.
    fifth = index.sync([edited, upvoted, *papers[2:10]], progress=False)
    assert fifth.removed >= 2
    assert {p.paper_id for p in index.papers()} == {p.paper_id for p in [edited, upvoted, *papers[2:10]]}
    assert max(_pairs(index).values()) == 1


def test_first_chunk_carries_whole_abstract(tmp_path, seed_papers, embedder):
    settings = Settings(index_dir=tmp_path / "idx")
    index = PaperIndex(settings, embedder=embedder, create=True)
    index.sync(seed_papers[:5], progress=False)
    listed = {p.paper_id: p for p in index.papers()}
    for paper in seed_papers[:5]:
        assert listed[paper.paper_id].abstract == paper.abstract
        assert listed[paper.paper_id].title == paper.title


def test_ingest_registers_user_files_and_removes_them(tmp_path, embedder):
    corpus = tmp_path / "mine.jsonl"
    corpus.write_text(
        '{"title": "A Study of Tiny Widgets", "abstract": "We study tiny widgets. They are small."}\n'
        '{"title": "Large Gadgets at Scale", "abstract": "We build large gadgets. They scale to 10 sites."}\n',
        encoding="utf-8",
    )
    settings = Settings(index_dir=tmp_path / "idx", corpus=[])
    report = ingest(settings, [corpus], progress=False, embedder=embedder)
    assert report.papers == 2
    index = PaperIndex(settings, embedder=embedder)
    assert len(index.corpus_files()) == 1
    # A bare re-run re-syncs the registered sources and changes nothing.
    assert ingest(settings, progress=False, embedder=embedder).added == 0
    with pytest.raises(CorpusError, match="no paper"):
        ingest(settings, remove=[corpus], progress=False, embedder=embedder)


def test_bad_file_stops_before_anything_is_lost(tmp_path, embedder):
    good = tmp_path / "good.jsonl"
    good.write_text('{"title": "Tiny Widgets", "abstract": "We study tiny widgets."}\n', encoding="utf-8")
    settings = Settings(index_dir=tmp_path / "idx", corpus=[])
    ingest(settings, [good], progress=False, embedder=embedder)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "Half a record"\n', encoding="utf-8")
    with pytest.raises(CorpusError, match="bad.jsonl"):
        ingest(settings, [bad], progress=False, embedder=embedder)
    index = PaperIndex(settings, embedder=embedder)
    assert [p.title for p in index.papers()] == ["Tiny Widgets"]
    assert len(index.corpus_files()) == 1  # the bad file was not registered


def test_missing_index_says_how_to_build_it(tmp_path):
    with pytest.raises(StoreError, match="rag ingest"):
        PaperIndex(Settings(index_dir=tmp_path / "nowhere"))


def test_index_path_that_is_a_file(tmp_path):
    path = tmp_path / "index"
    path.write_text("not a folder")
    with pytest.raises(StoreError, match="file, not a folder"):
        PaperIndex(Settings(index_dir=path), create=True)


def test_foreign_folder_is_not_written_into(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(StoreError, match="refusing"):
        PaperIndex(Settings(index_dir=folder), create=True)
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]


def test_corrupted_index_gives_rebuild_hint_and_rebuild_works(tmp_path, embedder):
    settings = Settings(index_dir=tmp_path / "idx", corpus=[])
    good = tmp_path / "good.jsonl"
    good.write_text('{"title": "Tiny Widgets", "abstract": "We study tiny widgets."}\n', encoding="utf-8")
    ingest(settings, [good], progress=False, embedder=embedder)
    (settings.index_dir / "chroma.sqlite3").write_bytes(b"this is not a database" * 100)
    code = textwrap.dedent(
        f"""
        from rag.config import Settings
        from rag.store import PaperIndex
        from rag.errors import StoreError
        try:
            PaperIndex(Settings(index_dir={str(settings.index_dir)!r})).count()
        except StoreError as e:
            print("STOREERROR", e)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "STOREERROR" in out.stdout and "--rebuild" in out.stdout, out.stdout + out.stderr
    report = subprocess.run(
        [sys.executable, "-m", "rag", "ingest", "--rebuild", "--quiet", str(good),
         "--index-dir", str(settings.index_dir)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "RAG_CORPUS": "[]"},
    )
    assert report.returncode == 0, report.stderr
    assert "1 papers" in report.stdout


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_unreadable_index_folder(tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    (folder / "chroma.sqlite3").write_bytes(b"")
    folder.chmod(0)
    try:
        with pytest.raises(StoreError, match="not readable"):
            PaperIndex(Settings(index_dir=folder))
    finally:
        folder.chmod(0o755)


KILL_PAPERS = 120  # ~200 chunks: several 32-chunk batches to kill in between
KILL_SCRIPT = """
import sys
from rag.config import Settings
from rag.corpus import load_corpus
from rag.config import SEEDS_DIR
from rag.embedding import load_embedder
from rag.store import PaperIndex
import rag.store
rag.store.ADD_BATCH = 32
settings = Settings(index_dir=sys.argv[1])
embedder = load_embedder(settings)
calls = 0
def embed(texts):
    global calls
    calls += 1
    print(f"batch {calls}", flush=True)  # batch n starts: n-1 batches are committed
    return embedder.get_text_embedding_batch(texts)
papers = load_corpus([SEEDS_DIR]).papers[:KILL_PAPERS]
PaperIndex(settings, create=True).sync(papers, progress=False, embed_texts=embed)
print("done", flush=True)
"""


@pytest.mark.parametrize("kill_at_batch", [pytest.param(3, marks=pytest.mark.slow), pytest.param(7, marks=pytest.mark.slow)])
def test_ingest_killed_midway_then_rerun_is_exact(tmp_path, seed_papers, embedder, kill_at_batch):
    papers = seed_papers[:KILL_PAPERS]
    folder = tmp_path / "idx"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT.replace("KILL_PAPERS", str(KILL_PAPERS)), str(folder)],
        stdout=subprocess.PIPE, text=True,
    )
    for line in proc.stdout:
        if line.strip() == f"batch {kill_at_batch}":
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    settings = Settings(index_dir=folder)
    expected = len(chunk_papers(papers, settings.chunk_size, settings.chunk_overlap))
    index = PaperIndex(settings, embedder=embedder)
    partial = index.count()
    assert 0 < partial < expected  # some batches were committed before the kill
    report = index.sync(papers, progress=False)
    assert index.count() == expected
    assert report.added == expected - partial
    assert max(_pairs(index).values()) == 1  # no duplicates
    assert sum(_pairs(index).values()) == expected  # no gaps


_NEAREST = textwrap.dedent("""
    import json, sys
    from rag.config import Settings
    from rag.store import PaperIndex
    index = PaperIndex(Settings(index_dir=sys.argv[1]))
    queries = json.loads(sys.stdin.read())
    got = index.collection.query(query_embeddings=queries, n_results=40, include=[])
    print(json.dumps(got["ids"]))
""")


def test_dense_search_is_exact_and_the_same_in_every_process(seed_index, seed_settings):
    """Chroma rebuilds a small collection's HNSW graph, with threads, in each process that
    opens it; with its default search list the top-40 differed between processes and missed
    true neighbours. The index's search list covers the collection: Chroma's top-40 is the
    brute-force top-40, here and in a fresh process."""
    import json

    import numpy as np

    from rag.store import EXACT_SEARCH_CHUNKS

    assert seed_index.count() <= EXACT_SEARCH_CHUNKS == seed_index.search_list()
    stored = seed_index.collection.get(include=["embeddings"], limit=seed_index.count())
    vectors = np.asarray(stored["embeddings"], dtype=np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rng = np.random.default_rng(7)
    # Queries near stored chunks, as a question near its abstract is, and far from all.
    queries = np.vstack([vectors[rng.choice(len(vectors), 20)] + rng.normal(0, 0.05, (20, 384)),
                         rng.normal(0, 1, (10, 384))])
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = [[stored["ids"][j] for j in np.argsort(-(vectors @ q))[:40]] for q in queries]

    here = seed_index.collection.query(query_embeddings=queries.tolist(), n_results=40, include=[])
    fresh = subprocess.run(
        [sys.executable, "-c", _NEAREST, str(seed_settings.index_dir)],
        input=json.dumps(queries.tolist()), capture_output=True, text=True, timeout=120, check=True,
    )
    assert here["ids"] == exact
    assert json.loads(fresh.stdout) == exact


def test_search_list_follows_the_collection_size(tmp_path, seed_papers, monkeypatch):
    """Past ``EXACT_SEARCH_CHUNKS`` the index goes back to Chroma's approximate search (an
    exact one would cost ~1 µs per chunk per question); an index written before the setting
    existed gets it at its next write."""
    import hashlib

    from rag import store

    def embed(texts):  # deterministic vectors: this test is about Chroma's configuration
        return [[b / 255 for b in hashlib.sha384(t.encode()).digest()] for t in texts]

    index = PaperIndex(Settings(index_dir=tmp_path / "idx"), create=True)
    index.collection.modify(configuration={"hnsw": {"ef_search": 100}})  # as older versions made it
    index.sync(seed_papers[:3], progress=False, embed_texts=embed)
    assert index.search_list() == store.EXACT_SEARCH_CHUNKS

    monkeypatch.setattr(store, "EXACT_SEARCH_CHUNKS", index.count() + 1)
    index.sync(seed_papers[:6], progress=False, embed_texts=embed)
    assert index.count() > store.EXACT_SEARCH_CHUNKS
    assert index.search_list() == store.APPROXIMATE_EF
    reopened = PaperIndex(Settings(index_dir=tmp_path / "idx"))
    assert reopened.search_list() == store.APPROXIMATE_EF


def test_a_write_killed_midway_is_not_counted_again_by_every_search(seed_index, seed_settings, tmp_path, monkeypatch):
    """A killed write leaves a "writing" version token. While a writer holds the folder's
    lock, a reader counts the chunks on every search (they change under it); once no writer
    does, it counts once (Chroma's count took ~70 ms per search at 750,000 chunks)."""
    import fcntl
    import shutil

    folder = tmp_path / "idx"
    shutil.copytree(seed_settings.index_dir, folder)
    settings = seed_settings.model_copy(update={"index_dir": folder})
    killed = textwrap.dedent(f"""
        import os
        from rag.config import Settings
        from rag.store import PaperIndex
        index = PaperIndex(Settings(index_dir={str(folder)!r}, corpus=[]))
        with index.writing():
            os._exit(0)  # dies as a SIGKILL would: no cleanup, no final version
    """)
    subprocess.run([sys.executable, "-c", killed], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))

    index = PaperIndex(settings)
    assert index.version().startswith("writing")
    counted = []
    real_count = index.count
    monkeypatch.setattr(index, "count", lambda: counted.append(1) or real_count())
    index.refresh()
    assert index.seen_count() == index.seen_count() == real_count() and len(counted) == 1

    with open(folder / ".lock", "w") as fh:  # a writer at work: every search counts
        fcntl.flock(fh, fcntl.LOCK_EX)
        index.seen_count()
        index.seen_count()
        assert len(counted) == 3
