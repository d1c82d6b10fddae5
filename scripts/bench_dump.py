"""Measure streamed ingest of synthetic arXiv-format dumps: time, chunks/s, peak memory,
and a SIGKILL + resume, through the real command line (``python -m rag ingest --stream``).

    python scripts/bench_dump.py                          # 10,000 and 100,000 papers
    python scripts/bench_dump.py --sizes 2000 --kill-at 0.5 --workdir /tmp/dump-bench

For each size: write the dump (``scripts/make_synthetic_dump.py``), stream it into a fresh
index in a child process while sampling the resident memory of that process every 0.2 s,
optionally kill it (SIGKILL) once the index holds ``--kill-at`` of the chunks and run it
again, then time a second run (nothing to add), a bare ``ingest`` (the registered dump is
unchanged: skipped) and a filtered search. Prints a table and one JSON object.
:func:`bench_dump` returns the same figures for use elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def _run_sampled(
    args: list[str], env: dict, kill_when=None, check: bool = True  # noqa: ANN001
) -> dict:
    """Run ``python -m rag ARGS``; peak RSS (MiB) sampled every 0.2 s. ``kill_when()``
    returning true SIGKILLs the process; a failure raises when ``check``, else its last
    error line is returned as ``error``."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rag", *args], env=env, cwd=ROOT,
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


def _count(index_dir: Path) -> int:
    """Chunks committed so far (0 while the index does not exist yet)."""
    from rag.config import Settings
    from rag.errors import RagError
    from rag.store import PaperIndex

    try:
        return PaperIndex(Settings(index_dir=index_dir, corpus=[])).count()
    except RagError:
        return 0


def bench_size(n: int, workdir: Path, kill_at: float | None, seed: int = 0) -> dict:
    """Every figure for one dump of ``n`` papers (see the module doc)."""
    from make_synthetic_dump import write_dump

    from rag.chunking import chunk_papers
    from rag.config import Settings
    from rag.corpus import stream_records

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
            return _count(settings.index_dir) >= kill_at * expected

        runs.append(_run_sampled(args, env, kill_when=reached))
        runs[-1]["chunks_at_kill"] = _count(settings.index_dir)
    runs.append(_run_sampled(args, env))
    final = _count(settings.index_dir)
    again = _run_sampled(args, env)
    bare = _run_sampled(["ingest", "--index-dir", str(settings.index_dir), "--quiet"], env)
    search = _run_sampled(["search", "graph neural network", "--category", "cs.LG", "--year",
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
    results: dict = {"dump_ingest": []}
    for n in sizes:
        results["dump_ingest"].append(bench_size(n, workdir, kill_at if n in kill_sizes else None))
        print(json.dumps(results["dump_ingest"][-1]), file=sys.stderr, flush=True)
    return results


def table(results: dict) -> str:
    rows = [("papers", "chunks", "exact", "ingest", "chunks/s", "peak RSS", "killed at",
             "rerun", "bare ingest")]
    for r in results["dump_ingest"]:
        killed = next((run["chunks_at_kill"] for run in r["runs"] if run.get("killed")), None)
        rows.append((f"{r['papers']:,}", f"{r['final_chunks']:,}", str(r["exact"]),
                     f"{r['ingest_seconds']:.0f} s", f"{r['chunks_per_second']:.1f}",
                     f"{r['peak_rss_mib']:,} MiB", f"{killed:,}" if killed else "-",
                     f"{r['rerun_seconds']:.1f} s", f"{r['bare_ingest_seconds']:.1f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated paper counts")
    parser.add_argument("--kill-at", type=float, default=0.5,
                        help="kill the largest size's ingest at this fraction (0: never)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where dumps and indexes go (default: a temporary folder)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="citewise-dump-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = bench_dump(sizes, workdir, kill_at=args.kill_at or None)
    print(table(results))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
