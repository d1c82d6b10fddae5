"""``python -m rag bench``: every benchmark in one run, each figure beside its baseline.

Sections (``--quick`` shrinks each one so CI can keep the command working):

* ingest    full ingest of the seed corpus vs the bare embedder on the same chunks; re-ingest
* embed     document embeddings as ingest makes them: torch vs the ONNX Runtime export (the
            question encoder's) and vs torch in bfloat16 (on CPUs with bf16 matrix support)
            on the same chunks: chunks/s, how far their vectors differ, and how often the
            evaluation questions' 10 nearest chunks stay the same
* search    p50/p95 of hybrid search over 100 queries at the seed index
* scale     embedded Chroma at synthetic sizes (build time, query p50/p95, resident memory)
* generate  time to first token and decode tokens/s through the pipeline vs bare generate
* answer    end-to-end seconds p50/p90 over the eval questions
* cold      ``python -m rag ask`` in a fresh process: seconds to its first token and to the
            end, without the int8 model cache (before) and with it (after), and with the
            model kept loaded by ``serve-model`` (served)
* app       app cold start to first served page, the model ready, one question answered
            through the ``/ask`` API, and the app's resident memory (peak, and what of it is
            file-backed)

Opt-in (``--only``), for they take long: ``assisted`` (generation with the bundled 1.5B
model and a draft model), and on synthetic arXiv-format dumps (``rag.evaluation.dumps``;
sizes in papers with ``--papers``): ``dump`` (streamed ingest through ``python -m rag ingest
--stream``, killed and resumed; 10,000 papers) and ``filters`` (filtered BM25 search, Chroma's
filter vs llama-index's per-chunk one; 50,000 papers).

Results are printed as a table and one JSON object, also written to ``--out``. Figures
with a target (:data:`TARGETS`) are marked as meeting or missing it, in the table and in
the JSON (``<section>.targets.<figure>``: the target and a ``met`` flag).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..compute_thread import run_on_compute_thread
from ..config import IS_CHECKOUT, PROJECT_ROOT, QUESTIONS, Settings
from ..errors import ConfigError
from .metrics import percentile

#: Asked by the cold-start figures (a fresh ``ask``, the app's ``/ask``): the README's example.
COLD_QUESTION = "What is a pointer network?"

#: (section, figure) -> the most it may be (all are "lower is better"), and its unit.
TARGETS: dict[tuple[str, str], tuple[float, str]] = {
    ("cold", "after_first_token_s"): (5.0, "s"),  # a fresh `ask`, model cache warm
    ("cold", "served_first_token_s"): (5.0, "s"),  # a fresh `ask`, the model kept by serve-model
    ("app", "cold_start_s"): (5.0, "s"),  # the page served after `python app.py`
    ("answer", "answer_p50_s"): (8.0, "s"),  # README, Performance: answers p50 <= 8 s
    ("search", "hybrid_p50_ms"): (100.0, "ms"),
}


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _questions(limit: int | None = None) -> list[dict]:
    items = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return items[:limit] if limit else items


def bench_ingest(settings: Settings, papers_limit: int | None = None) -> dict[str, Any]:
    """Full ingest (into a fresh index) vs the bare embedder on the same chunks; re-ingest."""
    from llama_index.core.schema import MetadataMode

    from sentence_transformers import SentenceTransformer

    from ..chunking import chunk_papers
    from ..corpus import load_corpus
    from ..devices import device_plan
    from ..embedding import Embedder, embedder_path
    from ..ingest import ingest

    embedder = Embedder(settings)
    embedder.embed_documents(["warm up"])
    bare_model = SentenceTransformer(embedder_path(settings.embed_model), device=device_plan(settings.device).device)
    papers = load_corpus(settings.corpus).papers[:papers_limit]
    texts = [n.get_content(metadata_mode=MetadataMode.EMBED)
             for n in chunk_papers(papers, settings.chunk_size, settings.chunk_overlap)]
    run_on_compute_thread(bare_model.encode, texts[:8])  # where ingest runs torch
    t = time.perf_counter()
    run_on_compute_thread(bare_model.encode, texts, batch_size=settings.embed_batch_size,
                          normalize_embeddings=True)
    bare = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        corpus = settings.corpus
        if papers_limit is not None:  # the same papers, as a user corpus file
            corpus = [Path(tmp) / "papers.jsonl"]
            corpus[0].write_text("".join(json.dumps(p.to_dict()) + "\n" for p in papers), encoding="utf-8")
        local = settings.with_overrides(index_dir=Path(tmp) / "index", corpus=corpus)
        t = time.perf_counter()
        report = ingest(local, progress=False, embedder=embedder)
        full = time.perf_counter() - t
        t = time.perf_counter()
        ingest(local, progress=False, embedder=embedder)
        again = time.perf_counter() - t
    return {"papers": len(papers), "chunks": report.chunks, "ingest_s": full, "bare_embed_s": bare,
            "ingest_vs_bare": full / bare, "reingest_s": again}


def bench_embed(settings: Settings, papers_limit: int | None = None) -> dict[str, Any]:
    """The seed corpus's chunks embedded as ingest embeds them (shortest first, in batches of
    ``embed_batch_size``, torch on the compute thread), then by the ONNX export, then by torch
    in bfloat16 where the CPU multiplies bf16 matrices; one run. Beside each one's speed, what
    it changes: the largest cosine difference from torch's vectors, and the share of the
    evaluation's questions whose 10 nearest chunks stay torch's, in the same order."""
    import numpy as np
    from llama_index.core.schema import MetadataMode

    from ..chunking import chunk_papers
    from ..corpus import load_corpus
    from ..embedding import Embedder

    embedder = Embedder(settings)
    papers = load_corpus(settings.corpus).papers[:papers_limit]
    texts = sorted((n.get_content(metadata_mode=MetadataMode.EMBED)
                    for n in chunk_papers(papers, settings.chunk_size, settings.chunk_overlap)), key=len)
    size = settings.embed_batch_size

    def timed(embed: Callable[[list[str]], list]) -> tuple[float, Any]:
        embed(texts[:size])  # warm up
        t = time.perf_counter()
        vectors = [v for i in range(0, len(texts), size) for v in embed(texts[i : i + size])]
        return time.perf_counter() - t, np.asarray(vectors)

    torch_s, torch_vecs = timed(embedder.embed_documents)
    out: dict[str, Any] = {"chunks": len(texts), "torch_chunks_per_s": len(texts) / torch_s}
    onnx = embedder.fast_encoder
    if onnx is None:
        out["onnx"] = "not available here (not on CPU, or not a mean-pooling local model)"
        return out
    onnx_s, onnx_vecs = timed(onnx.embed)
    queries = np.asarray(onnx.embed([q["question"] for q in _questions()]))

    def changes(prefix: str, vecs: Any) -> dict[str, float]:
        """The largest cosine difference from torch's vectors, and the share of the
        evaluation's questions whose 10 nearest chunks, in order, stay torch's."""
        def top(v: Any) -> Any:
            return np.argsort(-(queries @ v.T), axis=1, kind="stable")[:, :10]
        return {f"{prefix}max_cosine_difference": float((1 - (torch_vecs * vecs).sum(axis=1)).max()),
                f"{prefix}same_top10": float((top(vecs) == top(torch_vecs)).all(axis=1).mean())}

    out.update(onnx_chunks_per_s=len(texts) / onnx_s, onnx_vs_torch=torch_s / onnx_s, **changes("", onnx_vecs))
    import torch

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        out["bf16"] = "no bfloat16 matrix support on this CPU"
        return out

    def bf16(batch: list[str]) -> list[list[float]]:
        def run() -> list[list[float]]:
            with torch.autocast("cpu", dtype=torch.bfloat16):  # thread-local: on the compute thread
                return embedder.model.get_text_embedding_batch(batch)
        return run_on_compute_thread(run)

    bf16_s, bf16_vecs = timed(bf16)
    out.update(bf16_vs_torch=torch_s / bf16_s, **changes("bf16_", bf16_vecs))
    return out


def bench_search(settings: Settings, n: int = 100) -> dict[str, Any]:
    from ..pipeline import Pipeline

    pipeline = Pipeline(settings)
    queries = [q["question"] for q in _questions()]
    queries = (queries * (n // len(queries) + 1))[:n]
    pipeline.search(queries[0])  # load the embedder and BM25 once
    out: dict[str, Any] = {"queries": n}
    for mode in ("hybrid", "dense", "bm25"):
        times = []
        for q in queries:
            t = time.perf_counter()
            pipeline.search(q, mode=mode)
            times.append((time.perf_counter() - t) * 1000)
        out[f"{mode}_p50_ms"], out[f"{mode}_p95_ms"] = percentile(times, 0.5), percentile(times, 0.95)
    times = []
    for q in queries:
        t = time.perf_counter()
        pipeline.retriever.embed_query(q)
        times.append((time.perf_counter() - t) * 1000)
    out["query_embedding_p50_ms"] = percentile(times, 0.5)
    return out


def bench_scale(size: int, dim: int = 384, queries: int = 100) -> dict[str, Any]:
    """Embedded Chroma with ``size`` synthetic unit vectors (clustered like real topics)."""
    import chromadb
    import numpy as np
    from chromadb.config import Settings as ChromaSettings

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(256, dim)).astype("float32")
    before = rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        client = chromadb.PersistentClient(tmp, settings=ChromaSettings(anonymized_telemetry=False))
        from ..store import no_embedding_function

        col = client.create_collection("scale", metadata={"hnsw:space": "cosine"},
                                       embedding_function=no_embedding_function())
        t = time.perf_counter()
        batch = 5000
        for start in range(0, size, batch):
            m = min(batch, size - start)
            vecs = centers[rng.integers(0, 256, m)] + 0.6 * rng.normal(size=(m, dim)).astype("float32")
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            col.add(ids=[f"c{start + i}" for i in range(m)], embeddings=vecs,
                    metadatas=[{"paper_id": f"p{(start + i) // 3}"} for i in range(m)])
        build = time.perf_counter() - t
        qv = centers[rng.integers(0, 256, queries)] + 0.6 * rng.normal(size=(queries, dim)).astype("float32")
        qv /= np.linalg.norm(qv, axis=1, keepdims=True)
        col.query(query_embeddings=qv[:1], n_results=40)
        times = []
        for v in qv:
            t = time.perf_counter()
            col.query(query_embeddings=v[None, :], n_results=40)
            times.append((time.perf_counter() - t) * 1000)
        disk = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) / 2**20
    return {"chunks": size, "build_s": build, "add_per_s": size / build,
            "query_p50_ms": percentile(times, 0.5), "query_p95_ms": percentile(times, 0.95),
            "rss_growth_mb": rss_mb() - before, "disk_mb": disk}


def bench_generate(settings: Settings, new_tokens: int = 64, rounds: int = 3) -> dict[str, Any]:
    """Pipeline streaming vs bare ``model.generate`` on the same prompt, alternated
    ``rounds`` times; medians, so a burst of other work on the machine hits both alike."""
    from statistics import median

    from ..pipeline import Pipeline

    pipeline = Pipeline(settings)
    gen = pipeline.generator
    if not hasattr(gen, "bare_generate"):
        return {"skipped": f"{gen.name} is remote: no bare generate to compare with"}
    gen.load()
    q = _questions()[0]["question"]
    messages = pipeline.messages_for(q, pipeline.search(q))
    gen.bare_generate(messages, 4)  # warm up kernels
    prefills, bare_rates, ttfts, rates = [], [], [], []
    for _ in range(rounds):
        _, prefill, _ = gen.bare_generate(messages, 1)
        _, bare_s, bare_n = gen.bare_generate(messages, new_tokens)
        prefills.append(prefill)
        bare_rates.append((bare_n - 1) / max(bare_s - prefill, 1e-9))
        list(gen.stream(messages, new_tokens))
        ttfts.append(gen.last_timing.time_to_first_token)
        rates.append(gen.last_timing.decode_tokens_per_s or 0.0)
    return {"prompt_tokens": gen.last_timing.prompt_tokens, "rounds": rounds,
            "pipeline_ttft_s": median(ttfts), "bare_prefill_s": median(prefills),
            "pipeline_decode_tok_s": median(rates), "bare_decode_tok_s": median(bare_rates),
            "decode_ratio": median(rates) / median(bare_rates), "device": gen.device}


def bench_answers(settings: Settings, limit: int | None) -> dict[str, Any]:
    from ..pipeline import Pipeline

    pipeline = Pipeline(settings)
    pipeline.warm_up()
    totals, firsts, refused = [], [], 0
    for item in _questions(limit):
        answer = pipeline.ask(item["question"])
        totals.append(answer.timings["total"])
        if "first_token" in answer.timings:
            firsts.append(answer.timings["first_token"])
        refused += answer.refused
    return {"questions": len(totals), "answer_p50_s": percentile(totals, 0.5), "answer_p90_s": percentile(totals, 0.9),
            "ttft_p50_s": percentile(firsts, 0.5), "ttft_p90_s": percentile(firsts, 0.9), "refused": refused}


def bench_assisted(settings: Settings, n: int = 12, model: str = "bundled:qwen2.5-coder-1.5b",
                   draft: str = "bundled:qwen2.5-coder-0.5b") -> dict[str, Any]:
    """``model`` alone vs ``model`` with ``draft`` proposing tokens (assisted generation), on
    the prompts of the first ``n`` dev questions, alternated per prompt: seconds per answer,
    tokens per second, and how many answers came out identical."""
    from ..errors import ModelError
    from ..generation import TransformersGenerator
    from ..generation.models import BUNDLED, bundled_parts
    from ..pipeline import Pipeline

    if model in BUNDLED:
        try:
            bundled_parts(BUNDLED[model])
        except ModelError as exc:
            return {"skipped": str(exc)}
    plain = TransformersGenerator(settings.with_overrides(model=model, draft_model=""))
    assisted = TransformersGenerator(settings.with_overrides(model=model, draft_model=draft))
    plain.load(), assisted.load(), assisted.assistant.load()
    pipeline = Pipeline(settings)
    prompts = [pipeline.messages_for(q["question"], pipeline.search(q["question"]))
               for q in _questions() if q.get("split", "dev") == "dev"][:n]
    times, tokens, same = {"plain": [], "assisted": []}, {"plain": 0, "assisted": 0}, 0
    for messages in prompts:
        texts = {}
        for name, gen in (("plain", plain), ("assisted", assisted)):
            t = time.perf_counter()
            texts[name] = gen.generate(messages)
            times[name].append(time.perf_counter() - t)
            tokens[name] += len(gen.tokenizer.encode(texts[name], add_special_tokens=False))
        same += texts["plain"].strip() == texts["assisted"].strip()
    return {"prompts": len(prompts), "plain_p50_s": percentile(times["plain"], 0.5),
            "assisted_p50_s": percentile(times["assisted"], 0.5),
            "plain_tok_s": tokens["plain"] / sum(times["plain"]),
            "assisted_tok_s": tokens["assisted"] / sum(times["assisted"]),
            "speedup": sum(times["plain"]) / sum(times["assisted"]), "identical_answers": same}


class _Memory:
    """Resident memory of a process and its children, sampled: the peak, and the last
    sample split into anonymous memory and file-backed pages (memory-mapped files, e.g.
    weights read through mmap, which the kernel may drop and re-read at will)."""

    def __init__(self, pid: int):
        self.pid, self.peak_mb, self.last_mb, self.file_mb = pid, 0.0, 0.0, 0.0

    def sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
            infos = [p.memory_info() for p in [root, *root.children(recursive=True)]]
        except psutil.Error:
            return
        self.last_mb = sum(i.rss for i in infos) / 2**20
        self.file_mb = sum(getattr(i, "shared", 0) for i in infos) / 2**20
        self.peak_mb = max(self.peak_mb, self.last_mb)


def _run_timed(cmd: list[str], env: dict[str, str], marker: bytes, timeout: float) -> dict[str, Any]:
    """Run ``cmd`` in a fresh process: seconds until ``marker`` first appears on its stderr
    (None if never), until it exits, its exit code, peak resident memory, and its output."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: dict[str, float] = {}
    err, out = bytearray(), bytearray()

    def read_err() -> None:
        while chunk := proc.stderr.read1(4096):
            err.extend(chunk)
            if "marker" not in seen and marker in err:
                seen["marker"] = time.perf_counter() - t

    def read_out() -> None:
        out.extend(proc.stdout.read())

    readers = [threading.Thread(target=f, daemon=True) for f in (read_err, read_out)]
    for r in readers:
        r.start()
    memory = _Memory(proc.pid)
    try:
        while proc.poll() is None and time.perf_counter() - t < timeout:
            memory.sample()
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        total = time.perf_counter() - t
        for r in readers:
            r.join(5)
    return {"first": seen.get("marker"), "total": total, "rc": proc.returncode, "peak_mb": memory.peak_mb,
            "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace")}


def bench_cold(settings: Settings, question: str = COLD_QUESTION, before: bool = True,
               timeout: float = 600) -> dict[str, Any]:
    """``python -m rag ask QUESTION`` in a fresh process, as a user runs it: seconds to the
    first token (the "draft:" line on stderr) and to the end, and its peak memory; once
    with the int8 model cache turned off (``before``: load fp32 and quantize, as before the
    cache existed) and once with it (``after``). The cache is built first if missing. Then
    once more with the model served by another process (``served``, see :func:`_cold_served`)."""
    from ..generation.models import INT8_ENV, int8_folder, int8_key, resolve_model

    cmd = [sys.executable, "-m", "rag", "ask", question, "--index-dir", str(settings.index_dir)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out: dict[str, Any] = {"question": question}
    keyed = int8_key(resolve_model(settings.model, settings.model_cache_dir)) if not settings.openai_url else None
    if keyed and not int8_folder(settings.model_cache_dir, keyed[0]).exists():
        built = _run_timed(cmd, env, b"draft: ", timeout)  # builds the cache: not a figure of "after"
        out["cache_build_total_s"] = built["total"]
    runs = (("before", {INT8_ENV: "0"}), ("after", {})) if before else (("after", {}),)
    for name, extra in runs:
        run = _run_timed(cmd, {**env, **extra}, b"draft: ", timeout)
        if run["rc"] != 0:
            return {**out, "error": f"{name}: exit {run['rc']}: {run['stderr'][-500:]}"}
        out[f"{name}_first_token_s"] = run["first"]
        out[f"{name}_total_s"] = run["total"]
        out[f"{name}_peak_rss_mb"] = run["peak_mb"]
    if before and out.get("before_first_token_s") and out.get("after_first_token_s"):
        out["first_token_speedup"] = out["before_first_token_s"] / out["after_first_token_s"]
    if not settings.openai_url:
        out.update(_cold_served(cmd, env, timeout))
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Terminate ``proc``, killed if it has not exited within 30 s."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _cold_served(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """The same fresh ``ask`` with the model kept loaded by ``python -m rag serve-model``
    (``RAG_OPENAI_URL``): what a user who asks many questions from the shell waits for.
    ``served_*`` figures, and the seconds the server took to be ready."""
    port = _free_port()
    t = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "rag", "serve-model", "--port", str(port)], cwd=PROJECT_ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in server.stderr:  # its progress bars, then "Serving ... at URL (Ctrl+C stops)"
            if "Serving " in line:
                break
        else:
            return {"served_error": f"serve-model exited {server.wait()} before serving"}
        threading.Thread(target=server.stderr.read, daemon=True).start()  # keep its pipe drained
        out: dict[str, Any] = {"server_ready_s": time.perf_counter() - t}
        run = _run_timed(cmd, {**env, "RAG_OPENAI_URL": f"http://127.0.0.1:{port}/v1"}, b"draft: ", timeout)
        if run["rc"] != 0:
            return {**out, "served_error": f"exit {run['rc']}: {run['stderr'][-500:]}"}
        return {**out, "served_first_token_s": run["first"], "served_total_s": run["total"],
                "served_peak_rss_mb": run["peak_mb"]}
    finally:
        _stop(server)


def bench_app(settings: Settings, timeout: float = 300, question: str | None = COLD_QUESTION) -> dict[str, Any]:
    """Seconds from ``python app.py`` (warm caches, existing index) to the first served page
    (HTTP 200 on /) and to the model being ready (it loads in the background while the page
    is served); then one ``question`` through the app's ``/ask`` API. Resident memory of the
    app: at model ready, its peak over the whole run, and how much of the last sample is
    file-backed (mapped files) rather than the process's own memory."""
    import urllib.request

    port = _free_port()
    t = time.perf_counter()
    start = [str(PROJECT_ROOT / "app.py")] if IS_CHECKOUT else ["-m", "rag", "app"]
    proc = subprocess.Popen([sys.executable, *start, "--port", str(port),
                             "--index-dir", str(settings.index_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready: dict[str, float] = {}

    def watch() -> None:
        for line in proc.stdout:
            if line.startswith("Model ") and " ready on " in line:
                ready["model"] = time.perf_counter() - t

    threading.Thread(target=watch, daemon=True).start()
    memory, served, out = _Memory(proc.pid), None, {}
    try:
        while time.perf_counter() - t < timeout and proc.poll() is None:
            memory.sample()
            if served is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                        if r.status == 200:
                            served = time.perf_counter() - t
                except OSError:
                    pass
            if served is not None and "model" in ready:
                break
            time.sleep(0.25)
        memory.sample()
        out["rss_model_ready_mb"] = memory.last_mb
        if question and "model" in ready and proc.poll() is None:
            out.update(_ask_app(port, question, memory, timeout))
    finally:
        _stop(proc)
    return {"cold_start_s": served, "model_ready_s": ready.get("model"), "peak_rss_mb": memory.peak_mb,
            **out, "rss_file_backed_mb": memory.file_mb}


def _ask_app(port: int, question: str, memory: _Memory, timeout: float) -> dict[str, Any]:
    """Ask the running app ``question`` through its ``/ask`` API, sampling its memory."""
    from gradio_client import Client

    result: dict[str, Any] = {}

    def ask() -> None:
        try:
            t = time.perf_counter()
            answer = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(question, api_name="/ask")
            result["question_s"] = time.perf_counter() - t
            result["question_answered"] = not answer.get("refused", True)
        except Exception as exc:  # noqa: BLE001 - a figure missing, said why
            result["question_error"] = f"{type(exc).__name__}: {exc}"[:300]

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    t = time.perf_counter()
    while asker.is_alive() and time.perf_counter() - t < timeout:
        memory.sample()
        asker.join(0.1)
    memory.sample()
    return result


def mark_targets(section: str, figures: dict[str, Any]) -> dict[str, dict]:
    """``{figure: {"target": "<= 5 s", "max": 5.0, "value": v, "met": bool}}`` for the
    section's figures that have a target (a figure not measured counts as missing it)."""
    marks = {}
    for (sec, name), (limit, unit) in TARGETS.items():
        if sec == section and isinstance(figures, dict) and name in figures:
            value = figures[name]
            met = isinstance(value, (int, float)) and value == value and value <= limit
            marks[name] = {"target": f"<= {limit:g} {unit}", "max": limit, "unit": unit,
                           "value": value, "met": bool(met)}
    return marks


def mark(target: dict) -> str:
    """A target's verdict for the table: "✓ meets target ≤ 5 s" or "✗ misses target ≤ 5 s"."""
    bound = f"\u2264 {target['max']:g} {target['unit']}"
    return f"\u2713 meets target {bound}" if target["met"] else f"\u2717 misses target {bound}"


OPT_IN = ("assisted", "dump", "filters")  # long, or the opt-in 1.5B model: run with --only


def run(settings: Settings, quick: bool = False, only: list[str] | None = None,
        scale: list[int] | None = None, out: Path | None = None,
        echo: Callable[[str], object] = print, papers: list[int] | None = None) -> dict[str, Any]:
    """Run the selected sections and return {section: figures}. ``scale``: the synthetic
    index sizes (chunks) of ``scale``; ``papers``: the dump sizes of ``dump`` and ``filters``."""
    from . import dumps

    plan: dict[str, Callable[[], dict[str, Any]]] = {
        "ingest": lambda: bench_ingest(settings, 40 if quick else None),
        "embed": lambda: bench_embed(settings, 40 if quick else None),
        "search": lambda: bench_search(settings, 20 if quick else 100),
        "scale": lambda: {str(n): bench_scale(n, queries=20 if quick else 100)
                          for n in (scale or ([2000] if quick else [100_000]))},
        "generate": lambda: bench_generate(settings, 8 if quick else 64, 1 if quick else 3),
        "answer": lambda: bench_answers(settings, 2 if quick else None),
        "cold": lambda: bench_cold(settings, before=not quick),
        "app": lambda: bench_app(settings),
        "assisted": lambda: bench_assisted(settings, 3 if quick else 12),
        "dump": lambda: dumps.bench_dump(papers or ([300] if quick else [10_000]), workdir),
        "filters": lambda: {str(n): dumps.bench_filters(n, workdir / f"filters-{n}")
                            for n in (papers or ([400] if quick else [50_000]))},
    }
    if only and (unknown := sorted(set(only) - set(plan))):
        raise ConfigError(f"no benchmark section {', '.join(unknown)}; the sections are {', '.join(plan)}.")
    results: dict[str, Any] = {"quick": quick}
    workdir = Path(tempfile.mkdtemp(prefix="citewise-bench-"))  # the dumps and their indexes
    try:
        for name, fn in plan.items():
            if only and name not in only or not only and name in OPT_IN:
                continue
            echo(f"... {name}")
            results[name] = fn()
            if marks := mark_targets(name, results[name]):
                results[name]["targets"] = marks
                for figure, target in marks.items():
                    echo(f"    {name} {figure}: {_fmt(target['value'])} {mark(target)}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def table(results: dict[str, Any]) -> str:
    """A Markdown table: section | figure | value | target (met or missed, where one is set)."""
    rows = ["| section | figure | value | target |", "| --- | --- | --- | --- |"]
    for section, figures in results.items():
        if not isinstance(figures, dict):
            continue
        marks = figures.get("targets", {})
        for key, value in figures.items():
            if key == "targets":
                continue
            if isinstance(value, dict):
                for k2, v2 in value.items():
                    rows.append(f"| {section} {key} | {k2} | {_fmt(v2)} |  |")
            else:
                verdict = mark(marks[key]) if key in marks else ""
                rows.append(f"| {section} | {key} | {_fmt(value)} | {verdict} |")
    return "\n".join(rows)
