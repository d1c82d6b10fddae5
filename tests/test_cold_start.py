"""Cold starts, measured as users meet them: a fresh ``python -m rag ask`` before and after
the int8 model cache, the app from ``python app.py`` to a served page and one answered
question, and ``ask --json`` output that stays clean JSON with no progress bars. Fresh
processes run the tiny test model over a three-paper index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.config import PROJECT_ROOT
from test_generation import tiny  # noqa: F401 - the tiny model fixture, shared


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory, tiny) -> dict[str, str]:
    """The environment of a small index (pointer networks and two others) and the tiny test
    model, for the CLI and the app run as fresh processes."""
    tmp_path = tmp_path_factory.mktemp("tiny-index")
    corpus = tmp_path / "papers.jsonl"
    corpus.write_text("".join(json.dumps(p) + "\n" for p in [
        {"title": "Pointer Networks", "abstract": "We introduce a new neural architecture to learn the "
         "conditional probability of an output sequence with elements that are discrete tokens "
         "corresponding to positions in an input sequence. Pointer networks use attention as a pointer "
         "to select a member of the input sequence as the output."},
        {"title": "Sparse Widgets", "abstract": "We propose sparse widgets. They are 3x faster than dense widgets."},
        {"title": "Dense Gadgets", "abstract": "We study dense gadgets. Dense gadgets use more memory."},
    ]), encoding="utf-8")
    env = {**os.environ, "RAG_CORPUS": "[]", "RAG_INDEX_DIR": str(tmp_path / "index"),
           "RAG_MODEL": str(tiny["folder"]), "RAG_DEVICE": "cpu", "RAG_MAX_NEW_TOKENS": "8",
           "RAG_MODEL_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "rag", "ingest", "--quiet", str(corpus)], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return env


@pytest.fixture()
def tiny_model_env(tiny_index) -> dict[str, str]:
    """``tiny_index``'s environment, its int8 model cache emptied (the embedder's stays)."""
    shutil.rmtree(Path(tiny_index["RAG_MODEL_CACHE_DIR"]) / "int8", ignore_errors=True)
    return tiny_index


@pytest.mark.slow  # the default run covers it with the real models: test_bench (cold, app)
def test_cold_ask_before_and_after_the_int8_cache(tiny_model_env, monkeypatch) -> None:
    from rag.evaluation import bench
    from rag.config import Settings

    for key, value in tiny_model_env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    figures = bench.bench_cold(settings, question="What do pointer networks select?")
    assert "error" not in figures, figures
    assert figures["cache_build_total_s"] > 0  # the first run built the cache
    for run in ("before", "after"):
        assert figures[f"{run}_first_token_s"] > 0 and figures[f"{run}_total_s"] >= figures[f"{run}_first_token_s"]
        assert figures[f"{run}_peak_rss_mb"] > 0
    assert list((settings.model_cache_dir / "int8").iterdir())
    marks = bench.mark_targets("cold", figures)
    assert marks["after_first_token_s"]["met"] == (figures["after_first_token_s"] <= 5.0)


@pytest.mark.slow  # the default run covers it with the real models: test_bench (cold, app)
def test_app_figures_include_one_question_and_memory(tiny_model_env, monkeypatch) -> None:
    from rag.evaluation import bench
    from rag.config import Settings

    for key, value in tiny_model_env.items():
        monkeypatch.setenv(key, value)
    figures = bench.bench_app(Settings(), timeout=240, question="What do pointer networks select?")
    assert figures["cold_start_s"] > 0 and figures["model_ready_s"] > 0, figures
    assert figures["question_s"] > 0 and "question_error" not in figures, figures
    assert figures["peak_rss_mb"] >= figures["rss_model_ready_mb"] > 0
    assert 0 < figures["rss_file_backed_mb"] < figures["peak_rss_mb"]


@pytest.mark.slow  # the default run covers a cached run with the real model: test_wheel (ask --json)
def test_ask_json_is_clean_json_and_no_progress_bars(tiny_model_env) -> None:
    """``--json``: stdout is one JSON document and stderr carries no progress bar, on a first
    run (fp32 load, quantization, cache write) and on a cached one."""
    for run in ("first", "cached"):
        proc = subprocess.run([sys.executable, "-m", "rag", "ask", "What do pointer networks select?", "--json"],
                              cwd=PROJECT_ROOT, env=tiny_model_env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        answer = json.loads(proc.stdout)
        assert answer["question"] and answer["device"] == "cpu (int8)", (run, answer)
        for bar in ("Loading weights", "Quantizing", "int8 model", "%|", "it/s]"):
            assert bar not in proc.stderr, (run, proc.stderr[-2000:])
    assert list((Path(tiny_model_env["RAG_MODEL_CACHE_DIR"]) / "int8").iterdir())


@pytest.mark.slow  # the default run covers it with the real models: test_bench (cold, app)
def test_ask_without_json_shows_the_draft(tiny_model_env) -> None:
    proc = subprocess.run([sys.executable, "-m", "rag", "ask", "What do pointer networks select?"],
                          cwd=PROJECT_ROOT, env=tiny_model_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "draft: " in proc.stderr and "cpu (int8)" in proc.stdout
