"""The persisted keyword (BM25) index (``rag.keyword_index``): saved by every write, loaded
memory-mapped by readers, never used when stale, and the same results as a fresh build.
Real Chroma, the real embedder, real bm25s files; kills of a real ingest are in
``test_faults.py`` (they check the keyword index with ``assert_keyword_index_is_current``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rag import keyword_index
from rag.config import Settings
from rag.ingest import ingest
from rag.chunking import paper_of
from rag.retrieval import Retriever
from rag.store import PaperIndex
from rag.types import Filters

QUERIES = ["pointer networks convex hull", "reinforcement learning architecture search CIFAR-10",
           "attention transformer translation BLEU", "graph neural network", "zzzz unknown words"]


def bm25_results(retriever: Retriever, filters: Filters | None = None) -> list[list[tuple[str, float]]]:
    return [[(cid, round(score, 5)) for cid, score in retriever.bm25(q, 20, filters or Filters())]
            for q in QUERIES]


def fresh_build(index: PaperIndex, settings: Settings) -> list[list[tuple[str, float]]]:
    """The BM25 results of a keyword index built now, in memory, from what Chroma holds."""
    built = Retriever(index, settings)
    built._bm25, built._bm25_key = keyword_index.build(index), (index.seen_version, index.count())
    return bm25_results(built)


def saved_keys(settings: Settings) -> list[str]:
    """The keyword indexes saved in full (not what a save cut short left behind)."""
    folder = keyword_index.keyword_dir(settings)
    return sorted(p.name for p in folder.iterdir() if p.name[0] != ".") if folder.is_dir() else []


def assert_keyword_index_is_current(settings: Settings, embedder=None) -> None:  # noqa: ANN001
    """The index's saved keyword index is the one of its current version, a reader loads it
    memory-mapped, and it answers exactly as a fresh build."""
    index = PaperIndex(settings, embedder=embedder)
    key = keyword_index.key_of(index.version(), index.count())
    assert saved_keys(settings) == [key]
    reader = Retriever(index, settings, embedder=embedder)
    assert isinstance(reader._bm25_index().bm25.scores["data"], np.memmap)  # loaded, not built
    assert bm25_results(reader) == fresh_build(index, settings)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, seed_papers, embedder):
    """60 seed papers ingested once (the real embedder); each test gets a copy."""
    folder = tmp_path_factory.mktemp("keyword")
    corpus = folder / "papers.jsonl"
    corpus.write_text("".join(json.dumps({"id": p.paper_id, "title": p.title, "abstract": p.abstract,
                                          "published": p.published}) + "\n"
                              for p in seed_papers[:60]), encoding="utf-8")
    settings = Settings(index_dir=folder / "index", corpus=[corpus])
    ingest(settings, progress=False, embedder=embedder)
    return settings, corpus


@pytest.fixture()
def small(ingested, tmp_path):
    settings, corpus = ingested
    shutil.copytree(settings.index_dir, tmp_path / "index")
    return settings.with_overrides(index_dir=tmp_path / "index"), corpus


def test_an_ingest_saves_the_keyword_index_of_its_version(small, embedder):
    settings, _ = small
    assert_keyword_index_is_current(settings, embedder)
    stamp = json.loads(next(keyword_index.keyword_dir(settings).glob("*/" + keyword_index.STAMP)).read_text())
    assert stamp["count"] == stamp["chunks"] == PaperIndex(settings).count()


def test_filtered_keyword_search_is_the_same_loaded_or_built(small, embedder, seed_papers):
    settings, _ = small
    index = PaperIndex(settings, embedder=embedder)
    loaded = Retriever(index, settings, embedder=embedder)
    built = Retriever(index, settings, embedder=embedder)
    built._bm25, built._bm25_key = keyword_index.build(index), (index.seen_version, index.count())
    year = next(p.published for p in seed_papers[:60] if p.published)[:4]
    for filters in (Filters(date_from=year, date_to=year), Filters(date_from="2020")):
        assert bm25_results(loaded, filters) == bm25_results(built, filters)
    assert [loaded.idf()(t) for t in ("pointer", "network", "zzz")] == [built.idf()(t) for t in ("pointer", "network", "zzz")]


def test_built_a_page_at_a_time_it_scores_as_llama_index_bm25_over_every_node(small, embedder, monkeypatch):
    """The page-by-page build (only token ids kept) against llama-index's ``BM25Retriever``
    given every node at once, as the keyword index was built before: the same score for every
    chunk and every query, pages of 7 chunks merging their vocabularies."""
    import bm25s
    import Stemmer
    from llama_index.retrievers.bm25 import BM25Retriever

    import rag.store

    settings, _ = small
    index = PaperIndex(settings, embedder=embedder)
    nodes = index.chunk_nodes()
    reference = BM25Retriever.from_defaults(nodes=nodes, stemmer=Stemmer.Stemmer("english"), language="english",
                                            token_pattern=keyword_index.TOKEN_PATTERN, similarity_top_k=len(nodes))
    monkeypatch.setattr(rag.store, "PAGE", 7)
    built = keyword_index.build(index)
    assert built.chunk_ids == [node.node_id for node in nodes] and len(nodes) > 7 * 10
    for query in QUERIES + ["the of and"]:  # the last: stop words only
        (tokens,) = bm25s.tokenize(query, stemmer=Stemmer.Stemmer("english"), return_ids=False, show_progress=False)
        if tokens:
            expected = reference.bm25.get_scores(tokens)
            assert np.allclose(built.bm25.get_scores(tokens), expected, rtol=1e-6, atol=0) and expected.any()
        assert built.search(query, 20) == [(nid, pytest.approx(s, rel=1e-6)) for nid, s in
                                           keyword_index.KeywordIndex(reference.bm25, built.chunk_ids).search(query, 20)]


def test_an_ingest_that_changes_nothing_carries_the_saved_index_over(small, embedder):
    settings, _ = small
    before = next(keyword_index.keyword_dir(settings).glob("*/data.csc.index.npy")).stat().st_ino
    report = ingest(settings, progress=False, embedder=embedder)
    assert (report.added, report.updated, report.removed) == (0, 0, 0)
    assert_keyword_index_is_current(settings, embedder)
    after = next(keyword_index.keyword_dir(settings).glob("*/data.csc.index.npy")).stat().st_ino
    assert after == before  # renamed to the new version's key, not rebuilt


def test_a_new_paper_gets_a_new_keyword_index_and_is_found(small, embedder, tmp_path):
    settings, corpus = small
    old = saved_keys(settings)
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps({"title": "Quokka Gradient Descent", "abstract": "Quokkas descend gradients "
                                "with remarkable cheer. Quokka descent converges twice as fast."}) + "\n")
    ingest(settings, [mine], progress=False, embedder=embedder)
    assert saved_keys(settings) != old
    assert_keyword_index_is_current(settings, embedder)
    reader = Retriever(PaperIndex(settings, embedder=embedder), settings, embedder=embedder)
    best, _ = reader.bm25("quokka descent", 3, Filters())[0]
    assert paper_of(best) == "quokka-gradient-descent"


def test_a_stale_or_damaged_saved_index_is_rebuilt_never_used(small, embedder, caplog):
    settings, _ = small
    folder = keyword_index.keyword_dir(settings)
    index = PaperIndex(settings, embedder=embedder)
    (saved,) = folder.iterdir()
    # what a save killed midway leaves, and a copy from another version
    shutil.copytree(saved, folder / ".saving-killed")
    (folder / ".saving-killed" / keyword_index.STAMP).unlink()
    shutil.copytree(saved, folder / keyword_index.key_of("written-other-version", index.count()))
    # and the current one damaged
    (saved / "data.csc.index.npy").write_bytes(b"not a numpy file")
    reader = Retriever(index, settings, embedder=embedder)
    assert not isinstance(reader._bm25_index().bm25.scores["data"], np.memmap)  # rebuilt
    assert "unreadable" in caplog.text
    assert bm25_results(reader) == fresh_build(index, settings)
    assert keyword_index.load(folder, "written-other-version", index.count() + 1) is None  # wrong size
    assert keyword_index.key_of(index.version(), index.count()) in saved_keys(settings)


def test_with_a_chroma_server_only_bm25_dir_is_written(tmp_path):
    served = Settings(index_dir=tmp_path / "unused", chroma_url="http://127.0.0.1:1")
    assert keyword_index.keyword_dir(served) is None
    assert keyword_index.keyword_dir(served.with_overrides(bm25_dir=tmp_path / "kw")) == tmp_path / "kw"
    assert keyword_index.keyword_dir(Settings(index_dir=tmp_path / "i")) == tmp_path / "i" / "keyword"
