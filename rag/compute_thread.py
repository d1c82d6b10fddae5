"""One thread for all torch work in the process.

PyTorch's CPU kernels run on OpenMP, and OpenMP keeps a separate team of worker threads
for every thread that calls into it. Once two threads have used torch, two teams share
the cores; on a small CPU they get in each other's way for good: on 2 cores, greedy
decoding of the default model drops from ~17 to ~10 tokens/s as soon as a second thread
has run a forward pass (``python -m rag bench --only generate`` shows the ratio).

So model loading, generation, the judge's forward pass and torch embeddings are all run
here, on one long-lived daemon thread, whichever thread asks for them (the app's request
handlers, the model loader, the CLI). Calls are served one at a time, in order, which is
also the most a CPU can do usefully. A call made from the compute thread itself runs
directly, so nested calls cannot deadlock.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["on_compute_thread", "run_on_compute_thread", "submit"]

T = TypeVar("T")

_jobs: "queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple, dict]]" = queue.SimpleQueue()
_thread: threading.Thread | None = None
_start_lock = threading.Lock()


def _serve() -> None:
    while True:
        future, fn, args, kwargs = _jobs.get()
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            future.set_exception(exc)
        del future, fn, args, kwargs  # drop references (tensors) before waiting again


def on_compute_thread() -> bool:
    """True in the compute thread itself."""
    return _thread is not None and threading.current_thread() is _thread


def submit(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> "Future[T]":
    """Queue ``fn(*args, **kwargs)`` on the compute thread; its result or exception comes
    back through the returned future. From the compute thread itself it runs at once."""
    global _thread
    if on_compute_thread():
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - same contract as a queued call
            future.set_exception(exc)
        return future
    with _start_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_serve, name="citewise-compute", daemon=True)
            _thread.start()
    future = Future()
    _jobs.put((future, fn, args, kwargs))
    return future


def run_on_compute_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` run on the compute thread; returns its result or raises its
    exception in the calling thread."""
    return submit(fn, *args, **kwargs).result()
