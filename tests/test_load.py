"""Load: many ``gradio_client`` sessions at once against the real app server.

The app is the real one (``build_app(pipeline)``: Gradio queue, ``/ask`` API, handlers),
served on a free 127.0.0.1 port, over the real seed index and embedder; only the generator
is a fast scripted fake (``ExtractiveGenerator``), so what is measured is the serving path:
HTTP, the queue, retrieval and citation checking, not a language model. Citation checking
is lexical only (``semantic_support=False``): the semantic lift is embedding-model work.

Each session asks its questions one after the other, all sessions at once. Every request
must complete, or be cleanly refused with "queue full" when the queue is full; none may
error or hang: a hard deadline ends the run by itself. p50/p95 latencies are printed.

* CI size (default run): 4 sessions x 3 questions.
* ``python -m pytest -m slow tests/test_load.py``: 16 sessions x 3 questions, and an
  overload burst of 48 simultaneous sessions against the app's queue of 32, with a slowed
  generator, which must end in answers and clean "queue full" refusals only.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import pytest

from fakes import ExtractiveGenerator
from helpers import free_port
from rag.config import PROJECT_ROOT

QUEUE_MAX_SIZE = 32  # what rag/ui.py build_app configures


def eval_questions() -> list[str]:
    lines = (PROJECT_ROOT / "eval" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in lines if line.strip()]
    return [i["question"] for i in items if i.get("gold_titles")]


class SlowExtractiveGenerator(ExtractiveGenerator):
    """The extractive fake, taking ``delay`` seconds per answer (to fill the queue)."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    def stream(self, messages, max_new_tokens):  # noqa: ANN001, ANN201
        time.sleep(self.delay)
        yield from super().stream(messages, max_new_tokens)


@dataclass
class Outcome:
    session: int
    kind: str  # ok, rejected, error
    seconds: float
    detail: str = ""
    answer: dict = field(default_factory=dict)


def serve(seed_settings, seed_index, embedder, generator):  # noqa: ANN001, ANN201
    from rag.pipeline import Pipeline
    from rag.ui import build_app

    pipeline = Pipeline(seed_settings.with_overrides(semantic_support=False), generator=generator,
                        embedder=embedder, index=seed_index)
    pipeline.warm_up()  # BM25 built before the clock starts
    demo = build_app(pipeline)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                quiet=True)
    assert demo.local_url.startswith("http://127.0.0.1:")
    return demo


def run_sessions(url: str, n_sessions: int, per_session: int, deadline_s: float,
                 barrier: bool = False) -> tuple[list[Outcome], float]:
    """``n_sessions`` concurrent clients, each asking ``per_session`` questions in turn."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError

    questions = eval_questions()
    start = threading.Barrier(n_sessions) if barrier else None
    t_end = time.monotonic() + deadline_s

    def session(i: int) -> list[Outcome]:
        client = Client(url, verbose=False)
        if start:
            start.wait(timeout=deadline_s)
        out = []
        for j in range(per_session):
            question = questions[(i * per_session + j) % len(questions)]
            t0 = time.perf_counter()
            try:
                job = client.submit(question, api_name="/ask")
                answer = job.result(timeout=max(0.1, t_end - time.monotonic()))
                out.append(Outcome(i, "ok", time.perf_counter() - t0, answer=answer))
            except QueueError as exc:
                out.append(Outcome(i, "rejected", time.perf_counter() - t0, str(exc)))
            except (AppError, Exception) as exc:  # noqa: BLE001 - every other end is a failure
                kind = "rejected" if "queue is full" in str(exc).lower() else "error"
                out.append(Outcome(i, kind, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"))
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n_sessions) as pool:
        futures = [pool.submit(session, i) for i in range(n_sessions)]
        done, pending = wait(futures, timeout=deadline_s + 30)
        assert not pending, f"{len(pending)} sessions still running after the hard deadline"
    outcomes = [o for f in futures for o in f.result()]
    return outcomes, time.perf_counter() - t0


def report(label: str, outcomes: list[Outcome], wall: float) -> dict:
    ok = sorted(o.seconds for o in outcomes if o.kind == "ok")
    stats = {
        "requests": len(outcomes),
        "ok": len(ok),
        "rejected": sum(o.kind == "rejected" for o in outcomes),
        "errors": sum(o.kind == "error" for o in outcomes),
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(ok) / wall, 2) if wall else 0.0,
    }
    if ok:
        cuts = statistics.quantiles(ok, n=20, method="inclusive") if len(ok) > 1 else [ok[0]] * 19
        stats.update(p50_s=round(statistics.median(ok), 3), p95_s=round(cuts[18], 3),
                     max_s=round(ok[-1], 3))
    print(f"\n[load] {label}: " + ", ".join(f"{k}={v}" for k, v in stats.items()))
    return stats


def check(outcomes: list[Outcome], expected: int) -> None:
    assert len(outcomes) == expected
    errors = [o for o in outcomes if o.kind == "error"]
    assert not errors, errors[:3]
    for o in outcomes:
        if o.kind == "rejected":
            assert "queue" in o.detail.lower() and "full" in o.detail.lower(), o.detail
            continue
        a = o.answer
        assert isinstance(a, dict) and a["text"] and isinstance(a["refused"], bool), a
        numbers = {s["number"] for s in a["sources"]}
        assert {c["number"] for c in a["citations"]} <= numbers


def load_run(seed_settings, seed_index, embedder, n_sessions: int, per_session: int,  # noqa: ANN001
             deadline_s: float, generator=None, barrier: bool = False) -> tuple[list, dict]:
    demo = serve(seed_settings, seed_index, embedder, generator or ExtractiveGenerator())
    try:
        outcomes, wall = run_sessions(demo.local_url, n_sessions, per_session, deadline_s, barrier)
    finally:
        demo.close()
    stats = report(f"{n_sessions} sessions x {per_session} questions", outcomes, wall)
    check(outcomes, n_sessions * per_session)
    return outcomes, stats


def test_load_ci_size(seed_settings, seed_index, embedder):
    outcomes, stats = load_run(seed_settings, seed_index, embedder, 4, 3, deadline_s=90)
    assert stats["ok"] == 12 and stats["rejected"] == 0  # 4 sessions never fill a queue of 32
    assert sum(not o.answer["refused"] for o in outcomes) >= 6  # the fake really answers


@pytest.mark.slow
def test_load_sixteen_sessions(seed_settings, seed_index, embedder):
    _, stats = load_run(seed_settings, seed_index, embedder, 16, 3, deadline_s=300)
    assert stats["ok"] == 48 and stats["rejected"] == 0


@pytest.mark.slow
def test_load_overload_is_refused_cleanly(seed_settings, seed_index, embedder):
    """48 sessions submit at the same instant to a queue of 32 while each answer takes 0.5 s:
    the overflow is refused with "queue full", everything else is answered."""
    _, stats = load_run(seed_settings, seed_index, embedder, 48, 1, deadline_s=300,
                        generator=SlowExtractiveGenerator(0.5), barrier=True)
    assert stats["ok"] >= QUEUE_MAX_SIZE and stats["ok"] + stats["rejected"] == 48
