"""How long ``python app.py`` takes to serve its first page, and how much memory the app holds.

    python scripts/bench_app.py            # startup time and peak resident memory
    python scripts/bench_app.py --ask      # ... plus one real question through /ask

Run it with an existing index and the model already converted in the cache (start the app
once before), so it measures a normal start. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTION = ('What test accuracy and frame rate did the embedded classifier that recognizes "sit", '
            '"stand" and "lie down" for an automatic pet-treat dispenser achieve?')
MARKERS = {"Loading the models": "imports + index check", "Model ": "models loaded",
           "citewise is running": "server up"}
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "ANONYMIZED_TELEMETRY": "False"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (psutil, else /proc)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total
    except ImportError:
        return _proc_rss(pid)
    except Exception:  # noqa: BLE001 - the process just exited
        return 0


def _proc_rss(pid: int) -> int:
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(l.split()[1] for l in status.splitlines() if l.startswith("VmRSS"))) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            pass
    return total


class Sampler(threading.Thread):
    """Samples the tree's resident memory every 50 ms and keeps the peak."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            time.sleep(0.05)


def served(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200 and b"<html" in response.read(4096).lower()
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
    parser.add_argument("--ask", action="store_true", help="also time one question through /ask")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, **OFFLINE}
    t0 = time.perf_counter()
    app = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=ROOT,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    phases: dict[str, float] = {}
    output: list[str] = []

    def read() -> None:
        for line in app.stdout:
            output.append(line)
            for marker, phase in MARKERS.items():
                if line.startswith(marker) and phase not in phases:
                    phases[phase] = time.perf_counter() - t0

    threading.Thread(target=read, daemon=True).start()
    sampler = Sampler(app.pid)
    sampler.start()
    result: dict[str, float | str | None] = {}
    try:
        while not served(url):
            if app.poll() is not None or time.perf_counter() - t0 > args.timeout:
                print("".join(output[-20:]), file=sys.stderr)
                print(f"error: the app did not serve {url}", file=sys.stderr)
                return 1
            time.sleep(0.1)
        result["first_page_s"] = round(time.perf_counter() - t0, 2)
        time.sleep(1.0)
        result["peak_rss_mb_startup"] = round(sampler.peak / 2**20, 1)
        if args.ask:
            from gradio_client import Client

            t1 = time.perf_counter()
            answer = Client(url, verbose=False).predict(QUESTION, api_name="/ask")
            result["ask_s"] = round(time.perf_counter() - t1, 2)
            result["refused"] = answer["refused"]
            time.sleep(0.5)
        result["peak_rss_mb"] = round(sampler.peak / 2**20, 1)
    finally:
        sampler.stop.set()
        app.terminate()
        try:
            app.wait(15)
        except subprocess.TimeoutExpired:
            app.kill()
    result.update({f"{k.replace(' ', '_').replace('+', 'and')}_s": round(v, 2) for k, v in phases.items()})
    print(f"{'measure':<34}{'value':>10}")
    for key, value in result.items():
        print(f"{key:<34}{value!s:>10}")
    print(json.dumps({"bench": "app", **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
