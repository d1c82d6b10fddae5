"""Streamed ingest of large dumps (``rag.bulk``): exact counts, resumption after SIGKILL,
duplicates, bad lines, coexistence with the corpus sources, removal, and the author /
category / year filters on dense, BM25 and hybrid retrieval. Real Chroma, real embedder.

The dumps come from ``scripts/make_synthetic_dump.py``; they are small here because the
bundled embedder does about 20-40 abstracts a second on a 2-core CPU. The 100,000-paper
run with its memory ceiling is the ``slow`` test at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag.bulk import ingest_dump
from rag.chunking import author_key, chunk_papers
from rag.cli import app
from rag.config import Settings
from rag.corpus import stream_records
from rag.errors import CorpusError
from rag.evaluation import synthetic as make_dump
from rag.evaluation.dumps import bench_filters
from rag.ingest import ingest
from rag.retrieval import Retriever
from rag.store import ADD_BATCH, PaperIndex, portable_path
from rag.types import Filters, Paper
from test_keyword_index import assert_keyword_index_is_current

DUMP_PAPERS = 400  # two commits of ADD_BATCH chunks or less: the kill lands between them




def _papers(path: Path) -> list[Paper]:
    """The dump's papers as indexed: one per id, its last record winning."""
    last: dict[str, Paper] = {}
    for _, paper in stream_records(path):
        last.pop(paper.paper_id, None)
        last[paper.paper_id] = paper
    return list(last.values())


def _expected_ids(papers: list[Paper], settings: Settings) -> set[str]:
    return {n.node_id for n in chunk_papers(papers, settings.chunk_size, settings.chunk_overlap)}


def _all_ids(index: PaperIndex) -> list[str]:
    return [cid for page in index._pages([]) for cid in page["ids"]]


def _pairs(index: PaperIndex) -> Counter:
    return Counter((m["paper_id"], m["chunk_index"])
                   for page in index._pages(["metadatas"]) for m in page["metadatas"])


def _cli(*args: str):  # noqa: ANN202
    return CliRunner().invoke(app, list(args), env={"RAG_CORPUS": "[]"})


def _small_dump(tmp_path: Path, n: int, name: str = "small.jsonl", seed: int = 7) -> Path:
    path = tmp_path / name
    make_dump.write_dump(n, path, seed)
    return path


# --- one dump, streamed through the CLI, killed midway, then resumed -----------------------
@dataclass
class Streamed:
    settings: Settings
    dump: Path
    papers: list[Paper]
    partial: int
    resumed_added: int
    index: PaperIndex


def _committed(settings: Settings) -> int:
    try:
        return PaperIndex(settings).count()
    except Exception:  # noqa: BLE001 - not created yet
        return 0


@pytest.fixture(scope="module")
def streamed(tmp_path_factory, embedder) -> Streamed:
    folder = tmp_path_factory.mktemp("dump")
    dump = folder / "arxiv-like.jsonl"
    make_dump.write_dump(DUMP_PAPERS, dump, seed=1)
    settings = Settings(index_dir=folder / "index", corpus=[])
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag", "ingest", "--stream", str(dump), "--quiet",
         "--index-dir", str(settings.index_dir)],
        env={**os.environ, "RAG_CORPUS": "[]"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while _committed(settings) < ADD_BATCH and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    partial = _committed(settings)
    report = ingest_dump(settings, dump, progress=False, embedder=embedder)
    return Streamed(settings, dump, _papers(dump), partial, report.added,
                    PaperIndex(settings, embedder=embedder))


def test_killed_stream_resumes_to_the_exact_chunks(streamed):
    expected = _expected_ids(streamed.papers, streamed.settings)
    assert 0 < streamed.partial < len(expected)  # the kill landed between commits
    assert streamed.resumed_added == len(expected) - streamed.partial
    ids = _all_ids(streamed.index)
    assert len(ids) == len(set(ids)) == len(expected)  # no duplicate
    assert set(ids) == expected  # no gap
    assert max(_pairs(streamed.index).values()) == 1
    assert streamed.index.streamed_dumps()[portable_path(streamed.dump)]["chunks"] == len(expected)


def test_the_resumed_stream_saved_a_current_keyword_index(streamed, embedder):
    assert_keyword_index_is_current(streamed.settings, embedder)


def test_streaming_again_adds_nothing(streamed, embedder):
    before = streamed.index.count()
    report = ingest_dump(streamed.settings, streamed.dump, progress=False, embedder=embedder)
    assert (report.added, report.updated, report.removed) == (0, 0, 0)
    assert (report.papers, report.chunks) == (len(streamed.papers), before)
    assert streamed.index.count() == before


def test_bare_ingest_keeps_the_dump_beside_corpus_files(streamed, embedder, tmp_path):
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps({"title": "Tiny Widgets", "abstract": "We study tiny widgets."})
                    + "\n", encoding="utf-8")
    dumped = streamed.index.count()
    report = ingest(streamed.settings, [mine], progress=False, embedder=embedder)
    assert report.added == 1 and report.removed == 0
    assert streamed.index.count() == dumped + 1
    again = ingest(streamed.settings, progress=False, embedder=embedder)  # no args: re-sync all
    assert (again.added, again.removed) == (0, 0)
    assert again.papers == len(streamed.papers) + 1
    listed = _cli("sources", "--index-dir", str(streamed.settings.index_dir))
    assert f"{portable_path(streamed.dump)}  (streamed)" in listed.output
    dropped = ingest(streamed.settings, remove=[mine], progress=False, embedder=embedder)
    assert dropped.removed == 1
    assert streamed.index.count() == dumped  # the dump's chunks were never touched


def test_a_corpus_file_cannot_reuse_a_streamed_papers_id(streamed, embedder, tmp_path):
    taken = streamed.papers[0]
    quokka = tmp_path / "quokka.jsonl"
    quokka.write_text(json.dumps({"id": taken.paper_id, "title": "Quokka Notes",
                                  "abstract": "Quokkas were first described in 1850."}) + "\n",
                      encoding="utf-8")
    before = sorted(_all_ids(streamed.index))
    with pytest.raises(CorpusError, match=f"id '{taken.paper_id}' of 'Quokka Notes'.*nothing was changed"):
        ingest(streamed.settings, [quokka], progress=False, embedder=embedder)
    assert sorted(_all_ids(streamed.index)) == before
    assert portable_path(quokka) not in (streamed.index.registered_corpus_files() or [])


def test_a_dump_record_reusing_an_indexed_id_is_skipped_not_merged(tmp_path, embedder):
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps({"title": "Pointer Networks", "abstract": "We introduce a new "
                                "neural architecture that learns positions in an input sequence."})
                    + "\n", encoding="utf-8")
    settings = Settings(index_dir=tmp_path / "idx", corpus=[mine])
    ingest(settings, progress=False, embedder=embedder)
    dump = _small_dump(tmp_path, 5)
    lines = dump.read_text(encoding="utf-8").splitlines()
    hostile = {**json.loads(lines[0]), "id": "pointer-networks", "title": "Pointer Networks",
               "abstract": "Pointer networks were invented in 1850 by Ada Lovelace."}
    dump.write_text("\n".join([*lines, json.dumps(hostile)]) + "\n", encoding="utf-8")
    report = ingest_dump(settings, dump, progress=False, embedder=embedder)
    assert any("'pointer-networks'" in w and "skipped" in w for w in report.warnings)
    papers = {p.paper_id: p for p in PaperIndex(settings).papers()}
    assert "1850" not in papers["pointer-networks"].abstract
    assert len(papers) == 6  # the five dump papers and the real one


def _matching(papers: list[Paper], test) -> set[str]:  # noqa: ANN001
    return {p.paper_id for p in papers if test(p)}


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_author_category_and_year_filters(streamed, embedder, mode):
    papers = streamed.papers
    retriever = Retriever(streamed.index, streamed.settings, embedder=embedder)
    multi = next(p for p in papers if len(p.categories) >= 2)
    second = multi.categories[1]  # not the first: multi-category papers must match any
    author = multi.authors.split(",")[0].split(" and ")[0].strip()
    year = multi.published[:4]
    query = " ".join(multi.abstract.split()[:12])
    cases = {
        "author": (Filters(authors=author.upper()),
                   lambda p: author_key(author) in {author_key(a) for a in
                                                    p.authors.replace(" and ", ", ").split(", ")}),
        "category": (Filters(categories=(second.lower(), "no.such")),
                     lambda p: second in p.categories),
        "year": (Filters(date_from=year, date_to=year), lambda p: p.published[:4] == year),
        "all three": (Filters(authors=(author,), categories=(second,), date_from=year,
                              date_to=year),
                      lambda p: second in p.categories and p.published[:4] == year
                      and author_key(author) in {author_key(a) for a in
                                                 p.authors.replace(" and ", ", ").split(", ")}),
    }
    for name, (filters, test) in cases.items():
        allowed = _matching(papers, test)
        assert multi.paper_id in allowed, name
        hits = retriever.search(query, k=10, mode=mode, filters=filters)
        assert hits, name
        assert {h.paper_id for h in hits} <= allowed, name
        assert multi.paper_id in {h.paper_id for h in hits}, name  # its own words find it
    nothing = Filters(authors="Nobody Atall")
    assert retriever.search(query, k=10, mode=mode, filters=nothing) == []


def test_search_command_filters(streamed):
    multi = next(p for p in streamed.papers if len(p.categories) >= 2)
    year = multi.published[:4]
    out = _cli("search", " ".join(multi.abstract.split()[:12]), "-k", "5", "--json",
               "--category", multi.categories[-1], "--year", year,
               "--index-dir", str(streamed.settings.index_dir))
    assert out.exit_code == 0, out.output
    hits = json.loads(out.stdout)
    assert hits and hits[0]["paper_id"] == multi.paper_id
    by_id = {p.paper_id: p for p in streamed.papers}
    for hit in hits:
        paper = by_id[hit["paper_id"]]
        assert multi.categories[-1] in paper.categories and paper.published[:4] == year
    bad = _cli("search", "x", "--year", "last year", "--index-dir",
               str(streamed.settings.index_dir))
    assert bad.exit_code == 1 and bad.output.startswith("error: ") and "YYYY" in bad.output


# --- small dumps: duplicates, bad lines, edits, removal -------------------------------------
def test_repeated_ids_in_a_dump_are_indexed_once(tmp_path, embedder):
    path = _small_dump(tmp_path, 30)
    lines = path.read_text(encoding="utf-8").splitlines()
    first, second = json.loads(lines[0]), json.loads(lines[1])
    second_edit = {**second, "abstract": "A rewritten abstract. It replaces the first one."}
    path.write_text("\n".join([*lines, lines[0], json.dumps(second_edit)]) + "\n", encoding="utf-8")
    settings = Settings(index_dir=tmp_path / "idx", corpus=[])
    report = ingest_dump(settings, path, progress=False, embedder=embedder)
    papers = _papers(path)
    assert len(papers) == report.papers == 30
    index = PaperIndex(settings)
    assert set(_all_ids(index)) == _expected_ids(papers, settings)
    assert max(_pairs(index).values()) == 1
    kept = {p.paper_id: p.abstract for p in index.papers()}
    assert kept[second["id"]] == second_edit["abstract"]  # the last record wins
    assert first["id"] in kept
    assert "2 records repeat a paper id" in report.warnings[0]


def test_a_bad_line_stops_the_stream_before_any_write(tmp_path, embedder):
    settings = Settings(index_dir=tmp_path / "idx", corpus=[])
    good = _small_dump(tmp_path, 10, "good.jsonl")
    ingest_dump(settings, good, progress=False, embedder=embedder)
    index = PaperIndex(settings)
    before = sorted(_all_ids(index))
    bad = _small_dump(tmp_path, 40, "bad.jsonl", seed=8)
    lines = bad.read_text(encoding="utf-8").splitlines()
    lines.insert(33, '{"id": "x", "title": "Half a record"')
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.jsonl, line 34: not valid JSON"):
        ingest_dump(settings, bad, progress=False, embedder=embedder)
    assert sorted(_all_ids(index)) == before
    assert list(index.streamed_dumps()) == [portable_path(good)]  # the bad one is not registered
    out = _cli("ingest", "--stream", str(bad), "--index-dir", str(settings.index_dir), "-q")
    assert out.exit_code == 1
    assert out.output.count("\n") == 1 and "bad.jsonl, line 34" in out.output
    listing = tmp_path / "page.txt"
    listing.write_text("A title\nAn abstract.\n", encoding="utf-8")
    out = _cli("ingest", "--stream", str(listing), "--index-dir", str(settings.index_dir))
    assert out.exit_code == 1 and "JSON lines or CSV" in out.output
    out = _cli("ingest", "--stream", str(good), "--rebuild", "--index-dir", str(settings.index_dir))
    assert out.exit_code == 1 and "cannot be combined" in out.output


def test_an_edited_dump_is_brought_in_line(tmp_path, embedder):
    path = _small_dump(tmp_path, 20)
    settings = Settings(index_dir=tmp_path / "idx", corpus=[])
    ingest_dump(settings, path, progress=False, embedder=embedder)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    records[0]["abstract"] = "An edited abstract. Its chunk is new."
    records[1]["categories"] = "hep-th"  # metadata only: updated in place
    del records[2]  # gone from the dump: its chunks leave the index
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    index = PaperIndex(settings)
    report = ingest(settings, progress=False, embedder=embedder)  # changed: re-streamed
    # one new chunk (the edit), one updated in place, the edit's old chunk and paper 2 gone
    assert (report.added, report.updated, report.removed) == (1, 1, 2)
    assert set(_all_ids(index)) == _expected_ids(_papers(path), settings)
    assert max(_pairs(index).values()) == 1
    hits = Retriever(index, settings, embedder=embedder).search(
        records[1]["title"], k=5, mode="bm25", filters=Filters(categories="hep-th"))
    assert [h.paper_id for h in hits] == [records[1]["id"]]
    again = ingest(settings, progress=False, embedder=embedder)  # unchanged: skipped
    assert (again.added, again.updated, again.removed, again.papers) == (0, 0, 0, 19)


def test_remove_drops_only_the_dump(tmp_path, embedder):
    settings = Settings(index_dir=tmp_path / "idx", corpus=[])
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps({"title": "Tiny Widgets", "abstract": "We study tiny widgets."})
                    + "\n", encoding="utf-8")
    ingest(settings, [mine], progress=False, embedder=embedder)
    dump = _small_dump(tmp_path, 25)
    ingest_dump(settings, dump, progress=False, embedder=embedder)
    index = PaperIndex(settings)
    assert index.count() == 26
    out = _cli("ingest", "--remove", str(dump), "--index-dir", str(settings.index_dir), "-q")
    assert out.exit_code == 0, out.output
    assert "25 removed" in out.output
    assert [p.title for p in index.papers()] == ["Tiny Widgets"]
    assert index.streamed_dumps() == {}
    out = _cli("ingest", "--remove", str(mine), "--index-dir", str(settings.index_dir), "-q")
    assert out.exit_code == 1 and "no paper" in out.output


def test_a_dump_cannot_also_be_a_corpus_file(tmp_path, embedder):
    settings = Settings(index_dir=tmp_path / "idx", corpus=[])
    dump = _small_dump(tmp_path, 5)
    ingest_dump(settings, dump, progress=False, embedder=embedder)
    with pytest.raises(CorpusError, match="streamed source"):
        ingest(settings, [dump], progress=False, embedder=embedder)


# --- 100,000 papers: flat memory, killed once, exact -----------------------------------------
SLOW_PAPERS = 100_000
#: Peak resident memory of the streaming process. Measured here (scripts/bench_dump.py):
#: see the README's "Large corpora"; the ceiling leaves about 25% of margin.
RSS_CEILING_MIB = 1600


def _stream_sampled(args: list[str], kill_at: int | None, index_dir: Path) -> tuple[int, bool]:
    """Run ``rag ARGS`` and sample its peak RSS; SIGKILL it once the index holds
    ``kill_at`` chunks."""
    import psutil

    settings = Settings(index_dir=index_dir, corpus=[])
    proc = subprocess.Popen([sys.executable, "-m", "rag", *args],
                            env={**os.environ, "RAG_CORPUS": "[]"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched, peak, killed, polled = psutil.Process(proc.pid), 0, False, 0.0
    while proc.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.Error:
            pass
        if kill_at and not killed and time.monotonic() - polled > 2:
            polled = time.monotonic()
            if _committed(settings) >= kill_at:
                proc.send_signal(signal.SIGKILL)
                killed = True
        time.sleep(0.2)
    assert killed or proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    return peak // 2**20, killed


def _kill_resume_and_measure(tmp_path: Path, n: int) -> tuple[int, int, int]:
    """Stream an ``n``-paper dump through the CLI, SIGKILL it halfway, run it again;
    returns (expected chunks, chunks at the end, peak RSS in MiB over both runs)."""
    dump = tmp_path / f"synthetic-{n}.jsonl"
    make_dump.write_dump(n, dump, seed=0)
    index_dir = tmp_path / "idx"
    args = ["ingest", "--stream", str(dump), "--quiet", "--index-dir", str(index_dir)]
    settings = Settings(index_dir=index_dir, corpus=[])
    expected = sum(len(chunk_papers([p], settings.chunk_size, settings.chunk_overlap))
                   for _, p in stream_records(dump))
    first_peak, killed = _stream_sampled(args, kill_at=expected // 2, index_dir=index_dir)
    assert killed
    assert expected // 2 <= _committed(settings) < expected
    second_peak, _ = _stream_sampled(args, kill_at=None, index_dir=index_dir)
    ids = _all_ids(PaperIndex(settings))
    assert len(ids) == len(set(ids))  # no duplicate
    return expected, len(ids), max(first_peak, second_peak)


@pytest.mark.slow
def test_100k_dump_with_a_kill_stays_flat_and_exact(tmp_path):
    """About an hour on a 2-core CPU (the embedder's time)."""
    expected, final, peak = _kill_resume_and_measure(tmp_path, SLOW_PAPERS)
    assert final == expected
    assert peak <= RSS_CEILING_MIB, peak


def test_filtered_bm25_ranks_like_the_python_metadata_filter(tmp_path):
    """``bench --only filters`` on a small dump: Chroma's filter + a score mask returns the
    same BM25 ranking as llama-index's per-chunk metadata filter, for each kind of filter."""
    result = bench_filters(400, tmp_path)
    assert result["chunks"] == 400
    for name in ("category", "author", "year"):
        assert result[name]["hits"] > 0 and result[name]["same_ranking"], (name, result[name])
