"""Faults: processes killed at random points, damaged indexes and model caches, low memory.

(a) ``ingest`` SIGKILLed at seeded random points (three trials), then re-run: the exact
    chunk count, no duplicate, every vector intact and searchable.
(b) The real app (``python app.py``, tiny random model) SIGKILLed while it is answering,
    then restarted: the index is intact and the same question is answered.
(c) Damaged index folders. Already covered in tests/test_index.py: a missing index, a file
    instead of a folder, a foreign folder that is not written into, a garbage
    ``chroma.sqlite3`` (clear error, then ``python -m rag ingest --rebuild`` fixes it), an
    unreadable folder. Added here: an index whose Chroma tables are damaged, and one built
    with other chunking settings.
(d) The model cache. Already covered in tests/test_generation.py: deleted files, a flipped
    byte caught by the sha256, a truncated manifest, a cache that verifies but fails to
    load. Added here: a conversion SIGKILLed midway.
(e) Too little memory for the chosen model: a clear ModelError before loading.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import free_port
from rag.cli import app as cli_app
from rag.config import PROJECT_ROOT, Settings
from rag.errors import ModelError, StoreError
from test_generation import tiny  # noqa: F401 - the tiny random Qwen2 model, reused as a fixture
from test_keyword_index import assert_keyword_index_is_current

runner = CliRunner()

# A fast, deterministic stand-in for the embedder, identical in this process and the killed
# ones (the store, not the embedding model, is under test here).
FAKE_EMBEDDER = '''
import hashlib, math, random
def fake_vector(text, dim=384):
    rng = random.Random(hashlib.sha256(text.encode("utf-8", "replace")).digest())
    v = [rng.uniform(-1.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]
def fake_embed(texts):
    return [fake_vector(t) for t in texts]
'''
exec(FAKE_EMBEDDER)  # defines fake_vector and fake_embed here too

KILL_BATCH = 8  # chunks per commit in the killed ingests: ~11 commits for 40 papers
# One warm process (imports and tokenizer loaded once) forks an ingest per folder it reads on
# stdin; each forked child is the process that gets SIGKILLed. It prints "pid N", then one
# "batch" line as each batch is about to be embedded and added, then "exit STATUS".
KILL_LAUNCHER = FAKE_EMBEDDER + '''
import os, sys
import rag.store
from rag.chunking import chunk_papers
from rag.config import Settings
from rag.corpus import load_corpus
from rag.store import PaperIndex
import llama_index.vector_stores.chroma  # imported before forking, never used before it
rag.store.ADD_BATCH = int(sys.argv[2])
papers = load_corpus([sys.argv[1]]).papers
chunk_papers(papers, 200, 40)  # warm the splitter
def embed(texts):
    print("batch", flush=True)
    return fake_embed(texts)
print("ready", flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:  # a Chroma client is only ever created after the fork
        PaperIndex(Settings(index_dir=line.strip()), create=True).sync(
            papers, progress=False, embed_texts=embed)
        print("done", flush=True)
        os._exit(0)
    print(f"pid {pid}", flush=True)
    print(f"exit {os.waitpid(pid, 0)[1]}", flush=True)
'''


def write_jsonl(path: Path, papers) -> Path:  # noqa: ANN001
    path.write_text("".join(json.dumps({"title": p.title, "abstract": p.abstract}) + "\n"
                            for p in papers), encoding="utf-8")
    return path


def pairs(index) -> Counter:  # noqa: ANN001
    got = index.collection.get(include=["metadatas"])
    return Counter((m["paper_id"], m["chunk_index"]) for m in got["metadatas"])


# --- (a) ingest killed at random points ------------------------------------------------------
def test_ingest_sigkilled_at_random_points_then_rerun_is_exact(tmp_path, seed_papers):
    """Generalises tests/test_index.py (two fixed batch boundaries, real embedder): three
    seeded random kill points, each a random batch plus a random delay, so kills also land
    inside Chroma's writes, not only between them."""
    from rag.chunking import chunk_papers
    from rag.store import PaperIndex

    papers = seed_papers[:40]
    corpus = write_jsonl(tmp_path / "forty.jsonl", papers)
    settings = Settings(index_dir=tmp_path / "unused")
    wanted = {n.node_id for n in chunk_papers(papers, settings.chunk_size, settings.chunk_overlap)}
    expected, n_batches = len(wanted), -(-len(wanted) // KILL_BATCH)
    assert n_batches >= 6
    rng = random.Random(20241123)
    trials = [(rng.randint(2, n_batches - 2), rng.uniform(0.0, 0.06)) for _ in range(3)]

    launcher = subprocess.Popen([sys.executable, "-c", KILL_LAUNCHER, str(corpus), str(KILL_BATCH)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    folders, seen = [tmp_path / f"trial{i}" for i in range(len(trials))], []
    try:
        assert launcher.stdout.readline().strip() == "ready"
        for folder, (batch, delay) in zip(folders, trials):
            launcher.stdin.write(f"{folder}\n")
            launcher.stdin.flush()
            pid, count, status = None, 0, None
            for line in launcher.stdout:
                word, _, rest = line.strip().partition(" ")
                if word == "pid":
                    pid = int(rest)
                elif word == "batch":
                    count += 1
                    if count == batch:
                        time.sleep(delay)
                        os.kill(pid, signal.SIGKILL)
                elif word == "exit":
                    status = int(rest)
                    break
            seen.append({"batches": count, "signal": os.WTERMSIG(status)
                         if os.WIFSIGNALED(status) else None})
    finally:
        launcher.stdin.close()
        launcher.wait(timeout=60)

    for folder, (batch, delay), got in zip(folders, trials, seen):
        assert got["signal"] == signal.SIGKILL, (folder, got)
        index = PaperIndex(Settings(index_dir=folder))
        partial = index.count()
        print(f"killed at batch {batch}/{n_batches} +{delay * 1000:.0f} ms: "
              f"{partial}/{expected} chunks committed")
        assert (batch - 1) * KILL_BATCH <= partial < expected  # whole batches, none lost
        assert max(pairs(index).values()) == 1
        stored = index.collection.get(include=["embeddings", "documents", "metadatas"])
        assert all(doc and meta and len(vec) == 384 for doc, meta, vec in
                   zip(stored["documents"], stored["metadatas"], stored["embeddings"]))
        assert set(stored["ids"]) <= wanted

        report = index.sync(papers, progress=False, embed_texts=fake_embed)
        assert report.added == expected - partial and report.removed == 0
        assert index.count() == expected
        assert set(index.collection.get(include=[])["ids"]) == wanted
        assert max(pairs(index).values()) == 1 and sum(pairs(index).values()) == expected
        # every vector is searchable: a stored vector finds its own chunk first
        probe = index.collection.get(ids=sorted(wanted)[::17], include=["embeddings"])
        for cid, vec in zip(probe["ids"], probe["embeddings"]):
            hit = index.collection.query(query_embeddings=[list(vec)], n_results=1, include=[])
            assert hit["ids"][0] == [cid]
        assert index.sync(papers, progress=False, embed_texts=fake_embed).added == 0
        # the keyword index saved by the rerun is the index's, and answers as a fresh build
        assert_keyword_index_is_current(Settings(index_dir=folder))


# --- (b) the app killed mid-answer, then restarted -------------------------------------------
APP_PAPERS = 10
KILL_AFTER_S = 1.2  # after the request starts processing; generation takes a few seconds
APP_MAX_NEW_TOKENS = 600  # the tiny model writes ~150 tokens/s on a small CPU: a stream to cut


class AppProcess:
    """``python app.py`` in a subprocess; its output is collected by a thread."""

    def __init__(self, index_dir: Path, env: dict, timeout: float = 240.0):
        self.port = free_port()
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.model_ready = threading.Event()  # the app serves before its model has loaded
        self.proc = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "app.py"), "--port", str(self.port),
             "--index-dir", str(index_dir)],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        t0 = time.monotonic()
        while not self.ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > t0 + timeout:
                self.stop()
                pytest.fail("the app did not start:\n" + self.output[-3000:])
        self.start_s = time.monotonic() - t0

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if "is running at" in line:
                self.ready.set()
            if line.startswith("Model ") and " ready on " in line:
                self.model_ready.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def small_app_index(tmp_path_factory, seed_papers, embedder):
    """A real index of 10 seed papers (built once; each test copies it)."""
    from rag.ingest import ingest

    folder = tmp_path_factory.mktemp("faults-app")
    corpus = write_jsonl(folder / "ten.jsonl", seed_papers[:APP_PAPERS])
    settings = Settings(index_dir=folder / "index", corpus=[corpus])
    ingest(settings, progress=False, embedder=embedder)
    return settings


def snapshot(index_dir: Path) -> tuple[int, list[str], list[str]]:
    """Chunk count, chunk ids and paper ids of an index."""
    from rag.store import PaperIndex

    index = PaperIndex(Settings(index_dir=index_dir))
    return (index.count(), sorted(index.collection.get(include=[])["ids"]),
            sorted(p.paper_id for p in index.papers()))


@pytest.mark.slow  # about 50 s; the default run kills ingests midway (test_index, test_bulk)
def test_app_killed_mid_answer_restarts_and_answers(tiny, small_app_index, seed_papers, tmp_path):  # noqa: F811
    from gradio_client import Client
    from gradio_client.utils import Status

    index_dir = tmp_path / "index"
    shutil.copytree(small_app_index.index_dir, index_dir)
    before = snapshot(small_app_index.index_dir)  # the copy's original
    assert before[0] > 0
    env = {**os.environ, "RAG_MODEL": str(tiny["folder"]), "RAG_MAX_NEW_TOKENS": str(APP_MAX_NEW_TOKENS),
           "RAG_MODEL_CACHE_DIR": str(tmp_path / "model-cache"), "RAG_THREADS": "1",
           "RAG_CORPUS": json.dumps([str(c) for c in small_app_index.corpus])}
    question = f"What does the paper '{seed_papers[0].title}' show?"

    app = AppProcess(index_dir, env)
    try:
        assert app.model_ready.wait(240), app.output[-3000:]  # so the kill lands mid-generation
        job = Client(app.url, verbose=False).submit(question, api_name="/ask")
        deadline = time.monotonic() + 120
        while job.status().code != Status.PROCESSING:
            assert time.monotonic() < deadline and not job.done(), "the question was not taken up"
            time.sleep(0.01)
        started = time.perf_counter()
        time.sleep(KILL_AFTER_S)
        assert app.proc.poll() is None and not job.outputs()  # still answering
        app.kill()
        killed_after = time.perf_counter() - started
    finally:
        app.stop()
    assert app.proc.returncode == -signal.SIGKILL
    assert not job.outputs()  # the answer never arrived
    assert snapshot(index_dir) == before  # the index is intact (first opened here, after the kill)

    again = AppProcess(index_dir, env)
    try:
        assert again.model_ready.wait(240), again.output[-3000:]
        result = Client(again.url, verbose=False).predict(question, api_name="/ask")
    finally:
        again.stop()
    assert isinstance(result, dict) and isinstance(result["refused"], bool), result
    numbers = {s["number"] for s in result["sources"]}
    assert {c["number"] for c in result["citations"]} <= numbers
    t = result["timings"]
    print(f"app start {app.start_s:.1f} s, restart {again.start_s:.1f} s; "
          f"killed {killed_after:.2f} s into the request; the full answer after restart: "
          f"first token at {t.get('first_token', 0):.2f} s, generation {t.get('generation', 0):.2f} s, "
          f"total {t['total']:.2f} s, refused={result['refused']}")
    # the kill came after generation began and well before it would have ended
    assert t.get("first_token", 0) < killed_after < t["total"], (killed_after, t)
    assert "Traceback" not in again.output, again.output[-3000:]


# --- (c) damaged index folders ---------------------------------------------------------------
def damaged_copy(src: Path, dst: Path, table: str = "embeddings") -> Path:
    import sqlite3

    shutil.copytree(src, dst)
    db = sqlite3.connect(dst / "chroma.sqlite3")
    db.execute(f"DROP TABLE {table}")
    db.commit()
    db.close()
    return dst


@pytest.mark.parametrize("command", [["papers"], ["search", "perceptron"]])
def test_damaged_index_tables_give_one_clear_line(small_app_index, tmp_path, embedder, command,
                                                   monkeypatch):
    folder = damaged_copy(small_app_index.index_dir, tmp_path / "index")
    monkeypatch.setattr("rag.embedding.load_embedder", lambda s: embedder)
    result = runner.invoke(cli_app, [*command, "--index-dir", str(folder)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stderr.strip().startswith("error: ") and "--rebuild" in result.stderr


def garbled_copy(src: Path, dst: Path, share: float = 0.35, size: int = 64 * 1024) -> Path:
    """A copy whose ``chroma.sqlite3`` has ``size`` bytes of garbage from ``share`` of its length
    on (a disk or copy gone wrong; seeded, so every run damages the same bytes)."""
    shutil.copytree(src, dst)
    db = dst / "chroma.sqlite3"
    with db.open("r+b") as f:
        f.seek(int(db.stat().st_size * share) // 4096 * 4096)
        f.write(random.Random(7).randbytes(size))
    return dst


@pytest.mark.parametrize("damage", ["dropped-table", "garbage-early", "garbage-middle"])
def test_the_app_on_a_damaged_index_says_so_in_one_line(small_app_index, tmp_path, damage):
    """Early damage makes Chroma's Rust core panic while opening (its report must not show),
    later damage fails the first read of the chunks."""
    dst = tmp_path / "index"
    folder = {"dropped-table": lambda: damaged_copy(small_app_index.index_dir, dst),
              "garbage-early": lambda: garbled_copy(small_app_index.index_dir, dst, 0.05, 4096),
              "garbage-middle": lambda: garbled_copy(small_app_index.index_dir, dst)}[damage]()
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "app.py"), "--index-dir", str(folder),
                           "--port", str(free_port())], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RAG_CORPUS": "[]"})
    errors = [line for line in done.stderr.splitlines() if line.strip() and "Loading weights" not in line]
    assert done.returncode == 1, done.stderr[-2000:]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "--rebuild" in errors[0], errors
    assert "Traceback" not in done.stderr and "panicked" not in done.stderr


@pytest.mark.parametrize("command", [["papers"], ["search", "perceptron"]])
def test_the_cli_hides_the_rust_panic_of_a_damaged_index(small_app_index, tmp_path, command):
    folder = garbled_copy(small_app_index.index_dir, tmp_path / "index", 0.05, 4096)
    done = subprocess.run([sys.executable, "-m", "rag", *command, "--index-dir", str(folder)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "RAG_CORPUS": "[]"})
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(errors) == 1 and errors[0].startswith("error: "), done.stderr[-2000:]
    assert "--rebuild" in errors[0] and "panicked" not in done.stderr and "Traceback" not in done.stderr


def test_damaged_index_is_fixed_by_ingest_rebuild(small_app_index, tmp_path, embedder, monkeypatch):
    folder = damaged_copy(small_app_index.index_dir, tmp_path / "index", table="embeddings_queue")
    monkeypatch.setattr("rag.embedding.load_embedder", lambda s: embedder)
    corpus = [str(c) for c in small_app_index.corpus]
    rebuilt = runner.invoke(cli_app, ["ingest", "--rebuild", "--quiet", *corpus, "--index-dir",
                                      str(folder)], env={"RAG_CORPUS": "[]"})
    assert rebuilt.exit_code == 0, rebuilt.output
    assert f"{APP_PAPERS} papers" in rebuilt.stdout
    listed = runner.invoke(cli_app, ["papers", "--json", "--index-dir", str(folder)])
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == APP_PAPERS


def test_index_built_with_other_chunking_says_how_to_build_it(small_app_index, tmp_path):
    from rag.store import PaperIndex

    folder = shutil.copytree(small_app_index.index_dir, tmp_path / "index")
    with pytest.raises(StoreError, match=r"no collection for these settings.*rag ingest"):
        PaperIndex(Settings(index_dir=folder, chunk_size=300))
    assert PaperIndex(Settings(index_dir=folder)).count() > 0  # the original is untouched


# --- (d) a model conversion killed midway ------------------------------------------------------
CONVERT_KILL_SCRIPT = '''
import os, signal, sys
from pathlib import Path
import rag.generation.models as models
def die(path, data):  # the weights are saved; the manifest and the rename never happen
    os.kill(os.getpid(), signal.SIGKILL)
models.atomic_json = die
models.resolve_model(sys.argv[1], Path(sys.argv[2]))
'''


@pytest.fixture(scope="module")
def killed_conversion(tiny, tmp_path_factory) -> Path:  # noqa: F811
    """A model cache whose first conversion of the tiny GGUF was SIGKILLed midway."""
    cache = tmp_path_factory.mktemp("killed-conversion")
    proc = subprocess.run([sys.executable, "-c", CONVERT_KILL_SCRIPT, str(tiny["gguf"]), str(cache)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    return cache


def test_conversion_killed_midway_is_redone_on_next_start(tiny, killed_conversion):  # noqa: F811
    from rag.generation.models import resolve_model, verify_converted

    converted = killed_conversion / "converted"
    assert not [p for p in converted.iterdir() if not p.name.startswith(".")]  # no half cache
    r = resolve_model(str(tiny["gguf"]), killed_conversion)
    assert r.converted and verify_converted(Path(r.path), full=True)


def test_conversion_killed_midway_leaves_no_temporary_files(tiny, killed_conversion):  # noqa: F811
    from rag.generation.models import resolve_model

    resolve_model(str(tiny["gguf"]), killed_conversion)
    leftovers = [p.name for p in (killed_conversion / "converted").iterdir() if p.name.startswith(".")]
    assert leftovers == []


# --- (e) not enough memory for the chosen model ------------------------------------------------
def test_model_larger_than_available_memory_is_refused_clearly(tiny, tmp_path, monkeypatch):  # noqa: F811
    import psutil

    from rag.generation import TransformersGenerator

    weights = sum(p.stat().st_size for p in Path(tiny["folder"]).glob("*.safetensors"))
    real = psutil.virtual_memory()
    monkeypatch.setattr(psutil, "virtual_memory",
                        lambda: real._replace(available=weights // 4, free=weights // 4))
    settings = Settings(model=str(tiny["folder"]), device="cpu", quantize=False, threads=1,
                        model_cache_dir=tmp_path / "cache", max_new_tokens=9)  # a fresh load
    with pytest.raises(ModelError, match="(?i)memory"):
        TransformersGenerator(settings).load()
