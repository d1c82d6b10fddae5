"""Measure filtered keyword (BM25) search on a large streamed index: the filter evaluated
by Chroma (what ``Retriever.bm25`` does) against llama-index's metadata filter, which
checks every chunk in Python. Same index, same query, same BM25 matrices.

    python scripts/bench_filters.py                      # 50,000 papers in a temp folder
    python scripts/bench_filters.py --n 10000 --workdir /tmp/filter-bench

The dump comes from ``scripts/make_synthetic_dump.py`` and is streamed in with
``rag.bulk.ingest_dump``. Its chunks get random unit vectors instead of MiniLM embeddings:
only the keyword side is timed, and embedding 50,000 chunks on a CPU takes 20 minutes.
Prints one line per filter (medians of 5 and 3 runs) and whether both rankings agree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


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


def _median_ms(fn, runs: int) -> tuple[float, object]:  # noqa: ANN001
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def bench_filters(n: int, workdir: Path) -> dict:
    import Stemmer
    from llama_index.retrievers.bm25 import BM25Retriever
    from make_synthetic_dump import write_dump

    from rag.bulk import ingest_dump
    from rag.config import Settings
    from rag.retrieval import Retriever
    from rag.store import PaperIndex, llama_filters
    from rag.types import Filters

    dump, vectors = workdir / f"synthetic-{n}.jsonl", RandomVectors()
    settings = Settings(index_dir=workdir / "index", corpus=[])
    if not settings.index_dir.exists():
        write_dump(n, dump)
        ingest_dump(settings, dump, progress=True, embedder=vectors)
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

        def python_filter(f=filters):  # noqa: ANN001, ANN202
            view = BM25Retriever(existing_bm25=base.bm25, stemmer=base.stemmer,
                                 filters=llama_filters(f), similarity_top_k=40)
            return [h for h in view.retrieve(query) if h.score > 0]

        python_ms, old = _median_ms(python_filter, 3)
        out[name] = {"chroma_filter_ms": round(chroma_ms, 1), "python_filter_ms": round(python_ms, 1),
                     "hits": len(hits), "same_ranking": [cid for cid, _ in hits]
                     == [h.node.node_id for h in old]}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="papers in the dump (default 50,000)")
    parser.add_argument("--workdir", type=Path, help="keep the dump and index here (reused when present)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = bench_filters(args.n, args.workdir or Path(tmp))
    print(f"{result['chunks']:,} chunks; keyword index loaded in {result['bm25_load_s']} s")
    for name in ("category", "author", "year"):
        r = result[name]
        print(f"{name:<9} Chroma filter {r['chroma_filter_ms']:>7.1f} ms   Python filter "
              f"{r['python_filter_ms']:>7.1f} ms   {r['hits']} hits, same ranking: {r['same_ranking']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
