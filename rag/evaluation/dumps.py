"""Benchmarks on synthetic arXiv-format dumps (``rag.evaluation.synthetic``).

``python -m rag bench --only dump``: streamed ingest through the real command line
(``python -m rag ingest --stream``): time, chunks/s, peak memory, and a SIGKILL + resume.
For each size: write the dump, stream it into a fresh index in a child process while sampling
the resident memory of that process every 0.2 s, kill it (SIGKILL) once the index holds half
of the chunks (largest size only) and run it again, then time a second run (nothing to add),
a bare ``ingest`` (the registered dump is unchanged: skipped) and a filtered search.

``python -m rag bench --only filters``: filtered keyword (BM25) search on a large streamed
index: the filter evaluated by Chroma (what ``Retriever.bm25`` does) against llama-index's
metadata filter, which checks every chunk in Python. Same index, same query, same BM25
matrices. Its chunks get random unit vectors instead of MiniLM embeddings: only the keyword
side is timed, and embedding 50,000 chunks on a CPU takes 20 minutes. Medians of 5 and 3
runs per filter, and whether both rankings agree.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import PROJECT_ROOT
from .synthetic import write_dump


def run_sampled(args: list[str], env: dict, kill_when: Callable[[], bool] | None = None,
                check: bool = True) -> dict:
    """Run ``python -m rag ARGS``; peak RSS (MiB) sampled every 0.2 s. ``kill_when()``
    returning true SIGKILLs the process; a failure raises when ``check``, else its last
    error line is returned as ``error``."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rag", *args], env=env, cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(proc.pid)
    peak, killed = 0, False
    while proc.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.Error:
            pass
        if kill_when is not None and not killed and kill_when():
            proc.send_signal(signal.SIGKILL)
            killed = True
        time.sleep(0.2)
    out, err = proc.communicate()
    failed = proc.returncode != 0 and not killed
    if failed and check:
        raise RuntimeError(f"rag {' '.join(args)} failed: {err.strip()[-500:]}")
    return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mib": round(peak / 2**20),
            "killed": killed, "stdout": out.strip(),
            "error": err.strip().splitlines()[-1] if failed and err.strip() else None}


def indexed_chunks(index_dir: Path) -> int:
    """Chunks committed so far (0 while the index does not exist yet)."""
    from ..config import Settings
    from ..errors import RagError
    from ..store import PaperIndex

    try:
        return PaperIndex(Settings(index_dir=index_dir, corpus=[])).count()
    except RagError:
        return 0


def bench_size(n: int, workdir: Path, kill_at: float | None, seed: int = 0) -> dict:
    """Every figure for one dump of ``n`` papers (see the module doc)."""
    from ..chunking import chunk_papers
    from ..config import Settings
    from ..corpus import stream_records

    dump = workdir / f"synthetic-{n}.jsonl"
    if not dump.exists():
        write_dump(n, dump, seed)
    settings = Settings(index_dir=workdir / f"index-{n}", corpus=[])
    expected = sum(len(chunk_papers([p], settings.chunk_size, settings.chunk_overlap))
                   for _, p in stream_records(dump))
    env = {**os.environ, "RAG_CORPUS": "[]"}
    args = ["ingest", "--stream", str(dump), "--index-dir", str(settings.index_dir), "--quiet"]
    runs = []
    if kill_at:
        polled = {"at": 0.0}

        def reached() -> bool:  # poll the index at most once a second
            if time.monotonic() - polled["at"] < 1.0:
                return False
            polled["at"] = time.monotonic()
            return indexed_chunks(settings.index_dir) >= kill_at * expected

        runs.append(run_sampled(args, env, kill_when=reached))
        runs[-1]["chunks_at_kill"] = indexed_chunks(settings.index_dir)
    runs.append(run_sampled(args, env))
    final = indexed_chunks(settings.index_dir)
    again = run_sampled(args, env)
    bare = run_sampled(["ingest", "--index-dir", str(settings.index_dir), "--quiet"], env)
    search = run_sampled(["search", "graph neural network", "--category", "cs.LG", "--year",
                           "2021", "--json", "--index-dir", str(settings.index_dir)], env,
                          check=False)
    ingest_seconds = sum(r["seconds"] for r in runs)
    return {
        "papers": n, "dump_mib": round(dump.stat().st_size / 2**20, 1),
        "expected_chunks": expected, "final_chunks": final,
        "exact": final == expected,
        "ingest_seconds": round(ingest_seconds, 1),
        "chunks_per_second": round(expected / ingest_seconds, 1),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "runs": [{k: v for k, v in r.items() if k != "stdout"} for r in runs],
        "rerun_seconds": again["seconds"], "rerun_output": again["stdout"],
        "bare_ingest_seconds": bare["seconds"],
        "filtered_search_seconds": search["seconds"], "filtered_search_error": search["error"],
        "filtered_search_hits": len(json.loads(search["stdout"])) if not search["error"] else 0,
        "load_average": round(os.getloadavg()[0], 2),
    }


def bench_dump(sizes: list[int], workdir: Path, kill_at: float | None = 0.5,
               kill_sizes: set[int] | None = None) -> dict:
    """Figures for each size; the kill + resume runs for ``kill_sizes`` (default: the
    largest size)."""
    kill_sizes = {max(sizes)} if kill_sizes is None else kill_sizes
    return {str(n): bench_size(n, workdir, kill_at if n in kill_sizes else None) for n in sizes}


class RandomVectors:
    """Stands in for the embedder: random unit vectors (dense search is not measured)."""

    def __init__(self, dim: int = 384) -> None:
        import numpy as np

        self.dim, self.rng = dim, np.random.default_rng(0)

    def get_text_embedding_batch(self, texts: list[str], **_: object) -> list[list[float]]:
        import numpy as np

        v = self.rng.normal(size=(len(texts), self.dim)).astype("float32")
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).tolist()

    def get_query_embedding(self, text: str) -> list[float]:
        return self.get_text_embedding_batch([text])[0]


def _median_ms(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def bench_filters(n: int, workdir: Path, progress: bool = False) -> dict:
    import Stemmer
    from llama_index.retrievers.bm25 import BM25Retriever

    from ..bulk import ingest_dump
    from ..config import Settings
    from ..retrieval import Retriever
    from ..store import PaperIndex, llama_filters
    from ..types import Filters

    dump, vectors = workdir / f"synthetic-{n}.jsonl", RandomVectors()
    settings = Settings(index_dir=workdir / "index", corpus=[])
    if not settings.index_dir.exists():
        write_dump(n, dump)
        ingest_dump(settings, dump, progress=progress, embedder=vectors)
    index = PaperIndex(settings, embedder=vectors)
    retriever = Retriever(index, settings, embedder=vectors)
    t = time.perf_counter()
    retriever.bm25("warm up", 1, Filters())  # loads (or builds) the keyword index
    out = {"chunks": index.count(), "bm25_load_s": round(time.perf_counter() - t, 1)}
    # The baseline: llama-index's own metadata filter, over a BM25Retriever holding the chunks.
    base = BM25Retriever.from_defaults(nodes=index.chunk_nodes(), stemmer=Stemmer.Stemmer("english"),
                                       language="english", similarity_top_k=40)
    base.bm25.corpus = base.corpus  # the filtered views below read each chunk's metadata there
    # The query is the start of one paper's abstract; each filter lets that paper through.
    paper = json.loads(next(iter(dump.open(encoding="utf-8"))))
    year = paper["update_date"][:4]
    cases = {
        "category": Filters(categories=paper["categories"].split()[0]),
        "author": Filters(authors=paper["authors"].split(",")[0]),
        "year": Filters(date_from=year, date_to=year),
    }
    query = " ".join(paper["abstract"].split()[:10])
    for name, filters in cases.items():
        chroma_ms, hits = _median_ms(lambda f=filters: retriever.bm25(query, 40, f), 5)

        def python_filter(f: Filters = filters) -> list:
            view = BM25Retriever(existing_bm25=base.bm25, stemmer=base.stemmer,
                                 filters=llama_filters(f), similarity_top_k=40)
            return [h for h in view.retrieve(query) if h.score > 0]

        python_ms, old = _median_ms(python_filter, 3)
        out[name] = {"chroma_filter_ms": round(chroma_ms, 1), "python_filter_ms": round(python_ms, 1),
                     "hits": len(hits), "same_ranking": [cid for cid, _ in hits]
                     == [h.node.node_id for h in old]}
    return out
