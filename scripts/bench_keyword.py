"""Measure the persisted keyword (BM25) index: the first search of a fresh process with the
keyword index saved by the last write (loaded memory-mapped) against the same search when
the process has to build it (the saved one moved away), both in one run.

    python scripts/bench_keyword.py                      # 100,000 papers
    python scripts/bench_keyword.py --papers 20000 --workdir /tmp/kw-bench

The index is filled from a synthetic arXiv-format dump (``rag.evaluation.synthetic``)
through the real chunking and ``PaperIndex.sync``, with random unit vectors in place of the
embedder's (BM25 never reads vectors; embedding 100,000 chunks on a CPU takes most of an
hour, which ``python -m rag bench --only dump`` measures). That write ends, as every write does, by
saving the keyword index; its time is reported too. Each search runs in a new process
(``python -m rag search``, hybrid), which reports its first search's seconds after its
imports; the process's wall time and peak resident memory are reported beside them. Then
the keyword index is built in two more fresh processes, page by page as every write builds
it and, for comparison, as it was built before (llama-index's ``BM25Retriever`` given every
chunk's node at once): seconds, peak resident memory, and whether both rank the query's 20
best chunks alike. Prints a table and one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

QUERY = "graph neural networks for molecule property prediction"
#: One fresh process: imports, then the first hybrid search timed on its own.
FIRST_SEARCH = """
import json, sys, time
from rag.config import Settings
from rag.pipeline import Pipeline
pipeline = Pipeline(Settings(index_dir=sys.argv[1], corpus=[]))
pipeline.retriever.embed_query("warm the question encoder")  # not what is measured
t = time.perf_counter()
hits = pipeline.search(sys.argv[2])
print(json.dumps({"first_search_s": round(time.perf_counter() - t, 3), "hits": len(hits)}))
"""
#: One fresh process: the keyword index built from the index's chunks, either page by page
#: (``keyword_index.build``) or as it was before, by llama-index's ``BM25Retriever`` given
#: every chunk's node at once; then the best 20 chunks of the query, to compare the two.
BUILD = """
import json, sys, time
import bm25s, Stemmer
from rag import keyword_index
from rag.config import Settings
from rag.store import PaperIndex
index = PaperIndex(Settings(index_dir=sys.argv[1], corpus=[]))
t = time.perf_counter()
if sys.argv[3] == "pages":
    bm25 = keyword_index.build(index).bm25
else:
    from llama_index.retrievers.bm25 import BM25Retriever
    nodes = index.chunk_nodes()
    bm25 = BM25Retriever.from_defaults(nodes=nodes, stemmer=Stemmer.Stemmer("english"), language="english",
                                       token_pattern=keyword_index.TOKEN_PATTERN, similarity_top_k=len(nodes)).bm25
seconds = time.perf_counter() - t
(tokens,) = bm25s.tokenize(sys.argv[2], stemmer=Stemmer.Stemmer("english"), return_ids=False, show_progress=False)
scores = bm25.get_scores(tokens)
best = scores.argsort()[::-1][:20]
print(json.dumps({"build_s": round(seconds, 1), "best": [[int(i), round(float(scores[i]), 5)] for i in best]}))
"""


def fill(n: int, workdir: Path, seed: int = 0) -> dict:
    """An index of ``n`` synthetic papers (random vectors); the seconds its write took,
    keyword index included, and the seconds of the keyword index alone."""
    import numpy as np

    from rag import keyword_index
    from rag.config import Settings
    from rag.corpus import stream_records
    from rag.evaluation.synthetic import write_dump
    from rag.store import PaperIndex

    dump = workdir / f"synthetic-{n}.jsonl"
    if not dump.exists():
        write_dump(n, dump, seed)
    settings = Settings(index_dir=workdir / f"index-{n}", corpus=[])
    rng = np.random.default_rng(seed)

    def random_vectors(texts: list[str]) -> list[list[float]]:
        vecs = rng.standard_normal((len(texts), 384)).astype(np.float32)
        return (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).tolist()

    index = PaperIndex(settings, create=True)
    papers = [p for _, p in stream_records(dump)]
    start = time.perf_counter()
    index.sync(papers, progress=True, embed_texts=random_vectors)
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    keyword_index.save(keyword_index.build(index), workdir / "kw-timing", index.version(), index.count())
    save_s = time.perf_counter() - start
    shutil.rmtree(workdir / "kw-timing")
    return {"papers": n, "chunks": index.count(), "index_dir": str(settings.index_dir),
            "write_s": round(write_s, 1), "keyword_build_and_save_s": round(save_s, 1)}


def first_search(index_dir: str) -> dict:
    return measured(FIRST_SEARCH, index_dir, QUERY)


def measured(script: str, *args: str) -> dict:
    """The JSON ``script`` prints last, run in a fresh process, with the process's seconds
    and peak resident memory."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT,
                            env={**os.environ, "RAG_CORPUS": "[]"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    watched, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(err.strip()[-800:])
    return {**json.loads(out.strip().splitlines()[-1]), "process_s": round(time.perf_counter() - start, 1),
            "peak_rss_mib": round(peak / 2**20)}


def disk_mib(folder: Path) -> float:
    """The size of the files under ``folder``, in MiB."""
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20, 1)


def bench(n: int, workdir: Path) -> dict:
    figures = fill(n, workdir)
    folder = Path(figures["index_dir"]) / "keyword"
    aside = workdir / "keyword-aside"
    shutil.rmtree(aside, ignore_errors=True)
    shutil.move(str(folder), aside)  # the process must build it (and saves it again)
    figures["built"] = first_search(figures["index_dir"])
    shutil.rmtree(folder, ignore_errors=True)
    shutil.move(str(aside), folder)  # the copy the write saved
    figures["loaded"] = first_search(figures["index_dir"])
    figures["speedup"] = round(figures["built"]["first_search_s"] / figures["loaded"]["first_search_s"], 1)
    figures["disk_mib"] = disk_mib(folder)
    figures["build"] = {way: measured(BUILD, figures["index_dir"], QUERY, way) for way in ("llama-index", "pages")}
    figures["build"]["same_results"] = figures["build"]["pages"].pop("best") == figures["build"]["llama-index"].pop("best")
    return figures


def table(r: dict) -> str:
    rows = [("", "first search", "process", "peak RSS"),
            *((label, f"{r[k]['first_search_s']:.2f} s", f"{r[k]['process_s']:.1f} s",
               f"{r[k]['peak_rss_mib']:,} MiB") for label, k in (("built in the process", "built"),
                                                                  ("loaded as saved", "loaded")))]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"{r['papers']:,} papers, {r['chunks']:,} chunks; the write took {r['write_s']:.0f} s, of "
             f"which the keyword index ~{r['keyword_build_and_save_s']:.0f} s; saved: {r['disk_mib']} MiB"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.append(f"first search {r['speedup']}x faster with the saved keyword index")
    lines += [f"keyword index built {label}: {b['build_s']:.1f} s, process peak {b['peak_rss_mib']:,} MiB"
              for label, b in (("by llama-index from every node (before)", r["build"]["llama-index"]),
                               ("page by page", r["build"]["pages"]))]
    lines.append(f"same 20 best chunks and scores both ways: {r['build']['same_results']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the dump and the index go (default: a temporary folder)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="citewise-keyword-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = bench(args.papers, workdir)
    print(table(results))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
