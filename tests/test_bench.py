"""``python -m rag bench --quick`` keeps working end to end: every section runs against the
real models and a real index, and prints its table and JSON. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from rag.config import PROJECT_ROOT

SECTIONS = {
    "ingest": ["chunks", "ingest_s", "bare_embed_s", "ingest_vs_bare", "reingest_s"],
    "search": ["hybrid_p50_ms", "dense_p50_ms", "bm25_p50_ms", "query_embedding_p50_ms"],
    "scale": [],
    "generate": ["pipeline_ttft_s", "pipeline_decode_tok_s", "bare_decode_tok_s", "decode_ratio"],
    "answer": ["answer_p50_s", "answer_p90_s", "ttft_p50_s"],
    "app": ["cold_start_s", "model_ready_s", "peak_rss_mb"],
}


def test_bench_quick_runs_every_section(seed_index, seed_settings, tmp_path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "RAG_INDEX_DIR": str(seed_settings.index_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "rag", "bench", "--quick", "--out", str(out)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["quick"] is True
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert printed == results
    for section, figures in SECTIONS.items():
        assert section in results, section
        for name in figures:
            value = results[section][name]
            assert isinstance(value, (int, float)) and value > 0, (section, name, value)
    assert results["ingest"]["papers"] == 40
    (scale,) = results["scale"].values()
    assert scale["chunks"] == 2000 and scale["query_p50_ms"] > 0
    assert results["answer"]["questions"] == 2
    assert "| search | hybrid_p50_ms |" in proc.stdout
