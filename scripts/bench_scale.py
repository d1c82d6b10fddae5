"""Large corpora through the product, measured: synthetic arXiv-format dumps streamed in with
the real ``python -m rag ingest --stream``, then searched through the real pipeline.

    python scripts/bench_scale.py --sizes 100000 --workdir ~/scale-bench
    python scripts/bench_scale.py --sizes 100000,1000000 --workdir ~/scale-bench   # hours

For each size: the dump (``rag.evaluation.synthetic``), its streamed ingest (time,
chunks/s, peak resident memory of the ingest process), the first hybrid search of a fresh
process (``scripts/bench_keyword.py``'s probe: timed after its imports, with the process's
wall time and peak memory), hybrid search p50/p95 over 40 different questions in one warm
process (``Pipeline.search``: question encoder, Chroma, BM25, fusion), the resident memory
of the app (``python app.py``) once it has loaded everything and answered a search, against
the same app on the bundled corpus, and the index's size on disk (Chroma, keyword index).

Resumable: figures are kept in ``WORKDIR/results.json`` as each step ends, a finished step
is not run again, and an ingest cut short is finished by the same ``ingest --stream``.

The embedder: embedding a million abstracts with the bundled MiniLM takes about six hours
on a 2-core CPU (``python -m rag bench --only dump`` measures that path), so by default the index is
built with a *stand-in*: the bundled MiniLM cut to its first layer and 64 tokens, saved as
a local sentence-transformers folder and given to every process as ``RAG_EMBED_MODEL``, as
a user's own embedder would be. Its vectors have the same 384 dimensions, so Chroma, BM25
and every search do exactly the work they do with the bundled model. ``--embedder bundled``
uses the bundled model instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_keyword import disk_mib, first_search  # noqa: E402

from rag.evaluation.dumps import indexed_chunks as chunk_count  # noqa: E402
from rag.evaluation.dumps import run_sampled  # noqa: E402

SEARCHES = """
import json, sys, time
from rag.config import Settings
from rag.corpus import stream_records
from rag.pipeline import Pipeline
pipeline = Pipeline(Settings(index_dir=sys.argv[1], corpus=[]))
pipeline.search("warm up the encoder, Chroma and the keyword index")
titles = [p.title for _, (_, p) in zip(range(40), stream_records(sys.argv[2]))]
times = []
for title in titles:
    t = time.perf_counter()
    pipeline.search(title)
    times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def standin_embedder(workdir: Path, layers: int = 1) -> Path:
    """The bundled MiniLM cut to its first ``layers`` layers (none: the token embeddings,
    pooled) and 64 tokens (see the module doc)."""
    folder = workdir / ("standin-embedder" if layers == 1 else f"standin-embedder-{layers}")
    if (folder / "modules.json").exists():
        return folder
    from sentence_transformers import SentenceTransformer

    from rag.config import DEFAULT_EMBEDDER
    from rag.embedding import embedder_path

    model = SentenceTransformer(embedder_path(DEFAULT_EMBEDDER), device="cpu")
    encoder = model[0].auto_model
    encoder.encoder.layer = encoder.encoder.layer[:layers]
    encoder.config.num_hidden_layers = layers
    model.max_seq_length = 64
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp))
    os.replace(tmp, folder)
    return folder


def dump_of(n: int, workdir: Path) -> Path:
    from rag.evaluation.synthetic import write_dump

    dump = workdir / f"synthetic-{n}.jsonl"
    if not dump.with_suffix(".done").exists():
        write_dump(n, dump, seed=0)
        dump.with_suffix(".done").touch()
    return dump


def ingest(dump: Path, index_dir: Path, env: dict) -> dict:
    """Stream ``dump`` in; every run of it (an earlier one may have been cut short) adds up."""
    run = run_sampled(["ingest", "--stream", str(dump), "--index-dir", str(index_dir), "--quiet"], env)
    return {"seconds": run["seconds"], "peak_rss_mib": run["peak_rss_mib"]}


def searches(index_dir: Path, dump: Path, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", SEARCHES, str(index_dir), str(dump)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    from rag.evaluation.metrics import percentile

    ms = [t * 1000 for t in json.loads(out.strip().splitlines()[-1])]
    return {"p50_ms": round(percentile(ms, 0.5), 1), "p95_ms": round(percentile(ms, 0.95), 1), "n": len(ms)}


def app_memory(index_dir: Path, env: dict, port: int = 7871) -> dict:
    """Resident memory of ``python app.py`` once the models are loaded and one hybrid search
    went through its REST API."""
    import httpx
    import psutil

    proc = subprocess.Popen([sys.executable, "app.py", "--index-dir", str(index_dir), "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        start = time.perf_counter()
        for line in proc.stdout:
            if line.startswith("Model ") and " ready on " in line:
                break
            if line.startswith("error:"):
                raise RuntimeError(line.strip())
        ready_s = time.perf_counter() - start
        httpx.get(f"http://127.0.0.1:{port}/api/search", params={"q": "graph neural networks"},
                  timeout=600).raise_for_status()
        time.sleep(1)
        rss = psutil.Process(proc.pid).memory_info().rss
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {"rss_mib": round(rss / 2**20), "ready_s": round(ready_s, 1)}


def bench(sizes: list[int], workdir: Path, embedder: str, layers: int = 1) -> dict:
    path = workdir / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    env = {**os.environ, "RAG_CORPUS": "[]", "HF_HUB_OFFLINE": "1"}
    if embedder == "standin":
        env["RAG_EMBED_MODEL"] = os.environ["RAG_EMBED_MODEL"] = str(standin_embedder(workdir, layers))
        embedder = f"standin ({layers} layer{'s' if layers != 1 else ''})"
    if results.setdefault("embedder", embedder) != embedder:
        raise SystemExit(f"{workdir} holds results of the {results['embedder']} embedder; use another --workdir")

    def step(key: str, size: str, run) -> None:  # noqa: ANN001
        figures = results.setdefault(size, {})
        if key not in figures:
            figures[key] = run()
            path.write_text(json.dumps(results, indent=1))
            print(f"{size} {key}: {json.dumps(figures[key])}", file=sys.stderr, flush=True)

    baseline_dir = workdir / "index-bundled"
    if not baseline_dir.exists():
        subprocess.run([sys.executable, "-m", "rag", "ingest", "--index-dir", str(baseline_dir), "--quiet"],
                       cwd=ROOT, env={k: v for k, v in env.items() if k != "RAG_CORPUS"}, check=True)

    def baseline_app() -> dict:
        app_memory(baseline_dir, env)  # the first start may convert and cache the model: its peak stays
        return {**app_memory(baseline_dir, env), "chunks": chunk_count(baseline_dir)}

    step("app", "bundled", baseline_app)
    for n in sizes:
        dump, index_dir = dump_of(n, workdir), workdir / f"index-{n}"
        step("ingest", str(n), lambda: ingest(dump, index_dir, env))
        step("index", str(n), lambda: {"chunks": chunk_count(index_dir),
                                       "chroma_mib": disk_mib(index_dir) - disk_mib(index_dir / "keyword"),
                                       "keyword_mib": disk_mib(index_dir / "keyword")})
        step("first_search", str(n), lambda: first_search(str(index_dir)))
        step("search", str(n), lambda: searches(index_dir, dump, env))
        step("app", str(n), lambda: app_memory(index_dir, env))
    return results


def table(results: dict, sizes: list[int]) -> str:
    base = results["bundled"]["app"]
    lines = [f"embedder: {results['embedder']}; app on the bundled corpus ({base['chunks']:,} chunks): "
             f"{base['rss_mib']:,} MiB resident"]
    for n in sizes:
        r = results.get(str(n), {})
        if "app" not in r:
            lines.append(f"{n:,} papers: not finished ({', '.join(r) or 'nothing'} done)")
            continue
        i, f, s, a = r["index"], r["first_search"], r["search"], r["app"]
        lines.append(
            f"{n:,} papers, {i['chunks']:,} chunks: ingest {r['ingest']['seconds']:,.0f} s "
            f"({i['chunks'] / r['ingest']['seconds']:.0f} chunks/s, peak {r['ingest']['peak_rss_mib']:,} MiB); "
            f"first hybrid search {f['first_search_s']:.2f} s (process {f['process_s']:.1f} s, "
            f"peak {f['peak_rss_mib']:,} MiB); hybrid search p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms; "
            f"app {a['rss_mib']:,} MiB (+{a['rss_mib'] - base['rss_mib']:,} MiB over the bundled corpus); "
            f"disk: Chroma {i['chroma_mib']:,} MiB, keyword index {i['keyword_mib']:,} MiB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated paper counts")
    parser.add_argument("--workdir", type=Path, required=True,
                        help="where dumps, indexes and results.json go (run again to resume)")
    parser.add_argument("--embedder", choices=["standin", "bundled"], default="standin")
    parser.add_argument("--standin-layers", type=int, default=1, choices=range(0, 7), metavar="0-6",
                        help="layers the stand-in keeps (0: token embeddings only, for a 1M run in "
                             "about an hour of ingest)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = bench(sizes, args.workdir.resolve(), args.embedder, args.standin_layers)
    print(table(results, sizes))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
