"""The compute thread: every call, from any thread, runs on one long-lived thread."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rag.compute_thread import on_compute_thread, run_on_compute_thread, submit


def _where() -> tuple[int, bool]:
    return threading.get_ident(), on_compute_thread()


def test_calls_from_many_threads_run_on_one_thread():
    with ThreadPoolExecutor(4) as pool:
        seen = list(pool.map(lambda _: run_on_compute_thread(_where), range(20)))
    assert len({ident for ident, _ in seen}) == 1
    assert all(flag for _, flag in seen)
    assert seen[0][0] != threading.get_ident() and not on_compute_thread()


def test_results_and_exceptions_come_back_to_the_caller():
    assert run_on_compute_thread(lambda a, b=0: a + b, 2, b=3) == 5
    with pytest.raises(KeyError, match="missing"):
        run_on_compute_thread(lambda: {}["missing"])
    assert run_on_compute_thread(lambda: "still serving") == "still serving"


def test_a_call_from_the_compute_thread_runs_at_once():
    nested = run_on_compute_thread(lambda: run_on_compute_thread(_where))
    assert nested == run_on_compute_thread(_where)


def test_calls_run_one_at_a_time_in_order():
    order, gate = [], threading.Event()
    first = submit(lambda: gate.wait(5) and order.append("first"))
    second = submit(order.append, "second")
    assert not second.done()  # queued behind the first
    gate.set()
    first.result(5), second.result(5)
    assert order == ["first", "second"]
