"""The command line: real commands on real indexes; errors are one line and exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag.cli import app
from test_generation import tiny  # noqa: F401 - the tiny model fixture, shared

runner = CliRunner()


def run(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env)


def test_help_is_fast_and_loads_nothing_heavy():
    code = "import sys; from rag.cli import app; print(sorted(m for m in ('torch','transformers','chromadb','gradio','llama_index') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
    helped = subprocess.run([sys.executable, "-m", "rag", "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0
    for command in ("ingest", "search", "papers", "ask"):
        assert command in helped.stdout


@pytest.fixture()
def user_corpus(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        json.dumps({"title": "Sparse Widgets for Fast Retrieval", "abstract": "We propose sparse widgets. They are 3x faster than dense widgets.", "published": "2024-02-03"}) + "\n"
        + json.dumps({"title": "Dense Gadgets", "abstract": "We study dense gadgets. Dense gadgets use more memory."}) + "\n",
        encoding="utf-8",
    )
    return path


def test_ingest_search_papers_round_trip(tmp_path, user_corpus):
    env = {"RAG_CORPUS": "[]"}
    idx = str(tmp_path / "idx")
    result = run("ingest", "--quiet", str(user_corpus), "--index-dir", idx, env=env)
    assert result.exit_code == 0, result.output
    assert "2 papers" in result.output

    again = run("ingest", "--quiet", "--index-dir", idx, env=env)
    assert again.exit_code == 0 and "0 added" in again.output

    found = run("search", "fast sparse retrieval", "-k", "1", "--json", "--index-dir", idx, env=env)
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)
    assert [h["title"] for h in hits] == ["Sparse Widgets for Fast Retrieval"]
    assert hits[0]["number"] == 1

    listed = run("papers", "--json", "--index-dir", idx, env=env)
    papers = json.loads(listed.stdout)
    assert {p["title"] for p in papers} == {"Sparse Widgets for Fast Retrieval", "Dense Gadgets"}
    assert next(p for p in papers if p["title"].startswith("Sparse"))["published"] == "2024-02-03"

    text = run("search", "memory of gadgets", "--index-dir", idx, env=env)
    assert text.exit_code == 0 and "[1] Dense Gadgets" in text.output


@pytest.mark.parametrize(
    "args, message",
    [
        (("search", "anything"), "No index at"),
        (("papers",), "No index at"),
        (("search", "   "), "No index at"),  # the missing index is reported first
        (("ingest", "does-not-exist.jsonl"), "no such file"),
        (("search", "x", "--mode", "psychic"), "Invalid setting retrieval_mode"),
        (("search", "x", "-k", "0"), "Invalid setting top_k"),
    ],
)
def test_errors_are_one_clear_line(tmp_path, args, message):
    result = run(*args, "--index-dir", str(tmp_path / "none"))
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert "Traceback" not in result.output


def test_bad_corpus_file_names_file_and_line(tmp_path):
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"title": "Fine", "abstract": "Fine abstract here."}\n{not json\n', encoding="utf-8")
    result = run("ingest", str(bad), "--index-dir", str(tmp_path / "idx"), env={"RAG_CORPUS": "[]"})
    assert result.exit_code == 1
    assert "broken.jsonl" in result.output and "line 2" in result.output


def test_ask_empty_question_is_a_clear_error(seed_settings, seed_index):
    result = run("ask", "  ", "--index-dir", str(seed_settings.index_dir))
    assert result.exit_code == 1 and "error: The question is empty" in result.output


def test_a_device_this_machine_lacks_is_one_line(seed_settings, seed_index):
    """The embedder fails first (the generator gives the same line): not a 274-line traceback."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run("ask", "What is a pointer network?", "--device", "cuda", "--index-dir",
                 str(seed_settings.index_dir))
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["error: device 'cuda' is not available here; use device 'auto' or 'cpu'"], lines


def test_a_partial_eval_never_overwrites_the_report_of_record(tmp_path):
    from rag.cli import default_run_dir

    assert default_run_dir(tmp_path) == tmp_path / "eval" / "reports" / "latest"
    assert default_run_dir(tmp_path, limit=5) == tmp_path / "eval" / "reports" / "scratch"
    assert default_run_dir(tmp_path, questions=tmp_path / "mine.jsonl") == tmp_path / "eval" / "reports" / "scratch"
    gitignore = (Path(__file__).resolve().parent.parent / ".gitignore").read_text(encoding="utf-8")
    assert "eval/reports/scratch/" in gitignore.splitlines()


# --- --json everywhere, ask --continue, config files -------------------------------------------
def test_ingest_and_sources_print_json(tmp_path, user_corpus):
    env = {"RAG_CORPUS": "[]"}
    idx = str(tmp_path / "idx")
    result = run("ingest", "--json", str(user_corpus), "--index-dir", idx, env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["papers"], report["chunks"] >= 2, report["added"], report["removed"]) == (2, True, report["chunks"], 0)
    assert report["index"] == idx and report["warnings"] == [] and report["seconds"] >= 0
    listed = run("sources", "--json", "--index-dir", idx, env=env)
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == {"sources": [str(user_corpus.resolve())], "streamed": []}


def test_eval_json_refuses_compare(tmp_path):
    result = run("eval", "--json", "--compare", str(tmp_path), str(tmp_path))
    assert result.exit_code == 1 and "metrics.json" in result.output


@pytest.fixture()
def tiny_env(tmp_path, user_corpus, tiny):  # noqa: F811 - tiny: the tiny model fixture
    env = {"RAG_CORPUS": "[]", "RAG_INDEX_DIR": str(tmp_path / "idx"), "RAG_MODEL": str(tiny["folder"]),
           "RAG_DEVICE": "cpu", "RAG_MAX_NEW_TOKENS": "8", "RAG_MODEL_CACHE_DIR": str(tmp_path / "cache")}
    assert run("ingest", "--quiet", str(user_corpus), env=env).exit_code == 0
    return env


def test_ask_continue_carries_the_conversation(tiny_env):
    from rag.cli import CONVERSATION_TURNS

    missing = run("ask", "--continue", "and how fast are they?", env=tiny_env)
    assert missing.exit_code == 1 and "no conversation to continue" in missing.output
    first = run("ask", "What are sparse widgets?", "--json", env=tiny_env)
    assert first.exit_code == 0, first.output
    follow = run("ask", "--continue", "and how fast are they?", "--json", env=tiny_env)
    assert follow.exit_code == 0, follow.output
    assert json.loads(follow.stdout)["standalone_question"] == "How fast are sparse widgets?"
    fresh = run("ask", "and how fast are they?", "--json", env=tiny_env)  # no --continue: a new one
    assert json.loads(fresh.stdout)["standalone_question"] == "and how fast are they?"
    saved = json.loads((Path(tiny_env["RAG_MODEL_CACHE_DIR"]) / "conversation.json").read_text())
    assert [q for q, _ in saved["turns"]] == ["and how fast are they?"]
    for i in range(CONVERSATION_TURNS + 2):
        assert run("ask", "-c", f"and what about widget {i}?", "--json", env=tiny_env).exit_code == 0
    saved = json.loads((Path(tiny_env["RAG_MODEL_CACHE_DIR"]) / "conversation.json").read_text())
    assert len(saved["turns"]) == CONVERSATION_TURNS
    other = run("ask", "-c", "and then?", "--index-dir", tiny_env["RAG_INDEX_DIR"] + "-other", env=tiny_env)
    assert other.exit_code == 1 and "another index" in other.output


def test_a_config_file_sets_defaults_and_the_environment_wins(tmp_path, monkeypatch):
    from rag.config import Settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("RAG_TOP_K", raising=False)
    user = tmp_path / "config" / "citewise" / "citewise.toml"
    user.parent.mkdir(parents=True)
    user.write_text('top_k = 7\nretrieval_mode = "bm25"\n', encoding="utf-8")
    assert (Settings().top_k, Settings().retrieval_mode) == (7, "bm25")
    (tmp_path / "citewise.toml").write_text("top_k = 3\n", encoding="utf-8")  # the working folder's wins
    assert (Settings().top_k, Settings().retrieval_mode) == (3, "bm25")
    monkeypatch.setenv("RAG_TOP_K", "9")
    assert Settings().top_k == 9 and Settings(top_k=2).top_k == 2
    monkeypatch.setenv("CITEWISE_CONFIG", str(user))  # only that file
    monkeypatch.delenv("RAG_TOP_K")
    assert Settings().top_k == 7


@pytest.mark.parametrize("content, message", [
    ("top_kk = 3\n", "Unknown setting 'top_kk' in "),
    ("top_k = \n", "is not a valid TOML config file"),
    ("top_k = 0\n", "Invalid setting top_k"),
])
def test_a_bad_config_file_is_one_clear_line(tmp_path, monkeypatch, content, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "citewise.toml").write_text(content, encoding="utf-8")
    result = run("papers", "--index-dir", str(tmp_path / "none"))
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and message in lines[0], result.output
    monkeypatch.setenv("CITEWISE_CONFIG", str(tmp_path / "missing.toml"))
    missing = run("papers", "--index-dir", str(tmp_path / "none"))
    assert missing.exit_code == 1 and "CITEWISE_CONFIG" in missing.output
