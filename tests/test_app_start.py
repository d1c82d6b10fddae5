"""``python app.py`` starting for real: the page is served within seconds, before the
embedder and the model load (in the background, after), and a model that cannot load still
makes the app say why and exit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from rag.config import PROJECT_ROOT
from helpers import free_port

#: Seconds from process start to the page, with warm caches: about 4 s on an idle 2-core
#: machine (``bench --only app`` measures it against its 5 s target); it was 17-24 s when the
#: embedder loaded before the page was served. The bound here is loose, so a busy machine
#: does not fail it, and tight enough to catch that order coming back.
PAGE_BUDGET_S = 14.0


class App:
    """``python app.py`` in a subprocess, its output collected as it comes."""

    def __init__(self, *args: str):
        port = free_port()
        self.url, self.lines, self.started = f"http://127.0.0.1:{port}/", [], time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "app.py"), "--port", str(port), *args],
            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "RAG_THREADS": "1"})
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.proc.poll() is None or self.reader.is_alive(), self.output[-3000:]
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.output[-3000:]}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=10)


def page_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except OSError:
        return None


@pytest.mark.e2e
def test_the_page_is_served_within_seconds_before_the_models_load(seed_settings, seed_index):
    app = App("--index-dir", str(seed_settings.index_dir))
    try:
        while page_status(app.url) != 200:
            assert app.proc.poll() is None, app.output[-3000:]
            assert time.monotonic() - app.started < 120, "the page never came"
            time.sleep(0.05)
        took = time.monotonic() - app.started
        app.wait_for(f"citewise is running at {app.url}")
        served = app.output
    finally:
        app.stop()
    print(f"page served {took:.1f} s after start")
    assert "Model " not in served  # nothing loaded before: it comes after, in the background
    assert took < PAGE_BUDGET_S, f"the page took {took:.1f} s (budget {PAGE_BUDGET_S} s)"


@pytest.mark.e2e
def test_a_model_that_cannot_load_makes_the_app_say_why_and_exit(seed_settings, seed_index, tmp_path):
    app = App("--index-dir", str(seed_settings.index_dir), "--model", str(tmp_path))
    try:
        app.proc.wait(timeout=240)
    finally:
        app.stop()
    assert app.proc.returncode == 1, app.output[-3000:]
    assert f"citewise is running at {app.url}" in app.output  # it served the page first
    assert f"error: folder {tmp_path} holds no transformers model" in app.output
    assert "Traceback" not in app.output
