"""``python -m rag bench --quick`` keeps working end to end: each section runs against the
real models and a real index, and prints its table and JSON. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rag.config import PROJECT_ROOT

SECTIONS = {
    "ingest": ["chunks", "ingest_s", "bare_embed_s", "ingest_vs_bare", "reingest_s"],
    "embed": ["chunks", "torch_chunks_per_s", "onnx_chunks_per_s", "onnx_vs_torch", "same_top10"],
    "search": ["hybrid_p50_ms", "dense_p50_ms", "bm25_p50_ms", "query_embedding_p50_ms"],
    "scale": [],
    "generate": ["pipeline_ttft_s", "pipeline_decode_tok_s", "bare_decode_tok_s", "decode_ratio"],
    "answer": ["answer_p50_s", "answer_p90_s", "ttft_p50_s"],
    "cold": ["after_first_token_s", "after_total_s", "after_peak_rss_mb", "server_ready_s",
             "served_first_token_s", "served_total_s", "served_peak_rss_mb"],
    "app": ["cold_start_s", "model_ready_s", "peak_rss_mb", "rss_model_ready_mb", "question_s"],
    "dump": [],
    "filters": [],
}


# The sections that start fresh processes (a cold `ask`, the app) take most of the time: they
# run with -m slow (tests/test_app_start.py and tests/test_wheel.py start both by default).
GROUPS = [pytest.param(("ingest", "embed", "search", "scale", "generate", "answer"), id="in-process"),
          pytest.param(("cold", "app"), id="fresh-processes", marks=pytest.mark.slow),
          pytest.param(("dump", "filters"), id="synthetic-dumps", marks=pytest.mark.slow)]


@pytest.mark.parametrize("sections", GROUPS)
def test_bench_quick_runs_its_sections(sections, seed_index, seed_settings, tmp_path) -> None:
    from rag.evaluation.bench import TARGETS

    out = tmp_path / "bench.json"
    env = {**os.environ, "RAG_INDEX_DIR": str(seed_settings.index_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "rag", "bench", "--quick", "--out", str(out), *(f"--only={s}" for s in sections)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["quick"] is True and set(results) == {"quick", *sections}
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert printed == results
    for section in sections:
        for name in SECTIONS[section]:
            value = results[section][name]
            assert isinstance(value, (int, float)) and value > 0, (section, name, value)
    if "ingest" in sections:
        assert results["ingest"]["papers"] == 40
        embed = results["embed"]
        assert embed["max_cosine_difference"] < 1e-5  # the ONNX export's vectors are torch's
        assert embed["same_top10"] >= 0.9  # and so, bar a near tie, are the nearest chunks
        assert embed.get("bf16") or (embed["bf16_vs_torch"] > 0 and 0 < embed["bf16_max_cosine_difference"] < 1e-3)
        (scale,) = results["scale"].values()
        assert scale["chunks"] == 2000 and scale["query_p50_ms"] > 0
        assert results["answer"]["questions"] == 2
        assert "| search | hybrid_p50_ms |" in proc.stdout
    if "dump" in sections:  # streamed in by `ingest --stream`, killed halfway, finished by a rerun
        (dump,) = results["dump"].values()
        assert dump["exact"] and dump["final_chunks"] == dump["expected_chunks"] > 0
        assert [run["killed"] for run in dump["runs"]] == [True, False]
        (filters,) = results["filters"].values()
        assert all(filters[f]["same_ranking"] and filters[f]["hits"] > 0 for f in ("category", "author", "year"))
    for (section, figure), (limit, unit) in TARGETS.items():  # each target marked, met or not
        if section not in sections:
            continue
        target = results[section]["targets"][figure]
        assert target["met"] == (results[section][figure] <= limit)
        verdict = "\u2713 meets" if target["met"] else "\u2717 misses"
        assert f"| {section} | {figure} | " in proc.stdout and f"{verdict} target \u2264 {limit:g} {unit} |" in proc.stdout


def test_figures_with_targets_are_marked(monkeypatch, tmp_path) -> None:
    """Each figure that has a target says whether it meets it, in the table and in the JSON."""
    from rag.evaluation import bench
    from rag.config import Settings

    monkeypatch.setattr(bench, "bench_search", lambda settings, n: {"hybrid_p50_ms": 150.0, "dense_p50_ms": 9.0})
    monkeypatch.setattr(bench, "bench_answers", lambda settings, limit: {"answer_p50_s": 2.5})
    monkeypatch.setattr(bench, "bench_app", lambda settings: {"cold_start_s": None, "peak_rss_mb": 900.0})
    echoed: list[str] = []
    out = tmp_path / "bench.json"
    results = bench.run(Settings(), quick=True, only=["search", "answer", "app"], out=out, echo=echoed.append)
    search = results["search"]["targets"]["hybrid_p50_ms"]
    assert search == {"target": "<= 100 ms", "max": 100.0, "unit": "ms", "value": 150.0, "met": False}
    assert results["answer"]["targets"]["answer_p50_s"]["met"] is True
    assert results["app"]["targets"]["cold_start_s"]["met"] is False  # not measured: missed
    assert "dense_p50_ms" not in results["search"]["targets"]
    assert json.loads(out.read_text()) == results
    table = bench.table(results)
    assert "| search | hybrid_p50_ms | 150 | \u2717 misses target \u2264 100 ms |" in table
    assert "| answer | answer_p50_s | 2.5 | \u2713 meets target \u2264 8 s |" in table
    assert "| search | dense_p50_ms | 9 |  |" in table
    assert any("\u2717 misses target \u2264 5 s" in line for line in echoed)


def test_an_unknown_section_is_an_error_that_lists_the_sections() -> None:
    from typer.testing import CliRunner

    from rag.cli import app

    result = CliRunner().invoke(app, ["bench", "--only", "serch"])
    assert result.exit_code == 1 and "no benchmark section serch" in result.output
    assert "search" in result.output and "filters" in result.output


def test_every_target_names_a_figure_a_section_reports() -> None:
    from rag.evaluation import bench

    assert set(bench.TARGETS) == {("cold", "after_first_token_s"), ("cold", "served_first_token_s"),
                                  ("app", "cold_start_s"), ("answer", "answer_p50_s"),
                                  ("search", "hybrid_p50_ms")}
    assert bench.TARGETS[("cold", "after_first_token_s")] == (5.0, "s")
    assert bench.TARGETS[("app", "cold_start_s")] == (5.0, "s")
