"""citewise as an installed package: the wheel built from this checkout, installed into a
fresh virtual environment outside the repository, run from a folder that is not a checkout.

The wheel goes in with ``--no-deps``: its dependencies (torch and the rest, gigabytes) are
those of the environment running the tests, reached through a ``.pth`` line, so that the
wheel's own files, not the checkout's, are what runs. What is checked is what a user of
``pip install citewise`` meets: the ``citewise`` command, the bundled corpus and question set
read from inside the package, the index and reports kept in the user data folder, and
``citewise ask`` and ``citewise app`` working there with the real default models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from rag.config import PROJECT_ROOT, SEEDS_DIR
from helpers import free_port

@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(PROJECT_ROOT)], check=True, timeout=300)
    return next(out.glob("citewise-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh venv with the wheel installed; where it runs (a folder that is not a checkout)
    and its environment (its own user data folder; the usual model cache)."""
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "citewise-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                    str(wheel)], check=True, timeout=300)
    work = root / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "CITEWISE_", "PYTHON"))}
    env.update(XDG_DATA_HOME=str(root / "data"), XDG_CONFIG_HOME=str(root / "config"))
    return venv, work, env, root / "data" / "citewise"


def run(installed, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    venv, work, env, _ = installed
    return subprocess.run([str(venv / "bin" / "citewise"), *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_wheel_carries_the_corpus_the_questions_and_the_calibration(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    seeds = {f"rag/bundled/seeds/{p.name}" for p in SEEDS_DIR.iterdir() if p.is_file()}
    assert seeds and seeds <= names
    assert {"rag/bundled/eval/questions.jsonl", "rag/bundled/eval/judge_pairs.jsonl",
            "rag/calibration/qwen2.5-coder-0.5b.json", "rag/webapp.py", "rag/rest_api.py"} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "citewise = rag.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_installed_package_reads_its_bundled_data_and_writes_to_the_user_data_folder(installed):
    venv, work, env, data_dir = installed
    code = ("import json, rag, rag.config as c; from rag.corpus import load_corpus; "
            "s = c.Settings(); print(json.dumps({'rag': rag.__file__, 'checkout': c.IS_CHECKOUT, "
            "'corpus': [str(p) for p in s.corpus], 'papers': len(load_corpus(s.corpus).papers), "
            "'questions': c.QUESTIONS.is_file(), 'index': str(s.index_dir), 'reports': str(c.REPORTS_DIR)}))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=work, env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    facts = json.loads(out.stdout)
    site = str(venv / "lib")
    assert facts["rag"].startswith(site) and not facts["checkout"]
    assert all(p.startswith(site) for p in facts["corpus"]) and facts["papers"] > 400
    assert facts["questions"]
    assert facts["index"] == str(data_dir / "index") and facts["reports"].startswith(str(data_dir))


@pytest.mark.e2e
def test_citewise_ask_answers_with_citations_from_the_installed_package(installed, seed_settings, seed_index):
    result = run(installed, "ask", "What CIFAR-10 test error rate did neural architecture search reach?",
                 "--json", "--index-dir", str(seed_settings.index_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout)  # stdout is one JSON document ...
    assert not answer["refused"] and "3.65" in answer["text"] and answer["citations"]
    for bar in ("Loading weights", "int8 model", "%|", "it/s]"):  # ... and stderr has no progress bar
        assert bar not in result.stderr, result.stderr[-2000:]
    missing = run(installed, "ask", "What is a pointer network?", timeout=120)  # no index in the data folder yet
    assert missing.returncode == 1 and "ingest" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.e2e
def test_citewise_app_serves_the_chat_and_the_rest_api(installed, seed_settings, seed_index):
    venv, work, env, _ = installed
    port = free_port()
    app = subprocess.Popen([str(venv / "bin" / "citewise"), "app", "--port", str(port), "--index-dir",
                            str(seed_settings.index_dir)], cwd=work, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        for line in app.stdout:
            if line.startswith("citewise is running at") or time.monotonic() > deadline:
                break
        assert line.startswith(f"citewise is running at http://127.0.0.1:{port}/"), line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=30) as config:
            assert json.load(config)["title"] == "citewise"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/papers?limit=1", timeout=120) as papers:
            assert json.load(papers)["total"] == len(seed_index.papers())
    finally:
        app.terminate()
        app.wait(30)


def test_citewise_app_help_lists_its_options(installed):
    result = run(installed, "app", "--help", timeout=60)
    assert result.returncode == 0 and "--port" in result.stdout and "REST API" in result.stdout
