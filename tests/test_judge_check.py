"""The judge check: hand-labelled pairs load, verdicts are scored per label and per kind, and the
shipped pairs are sound (verbatim evidence, both labels, every kind of case)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from rag.config import PROJECT_ROOT
from rag.errors import CorpusError
from rag.evaluation.run import Judges
from rag.evaluation.judge import check_judge, confusion, format_report, load_pairs

PAIRS = PROJECT_ROOT / "eval" / "judge_pairs.jsonl"


def test_shipped_pairs_are_sound(seed_papers):
    pairs = load_pairs(PAIRS)
    assert len(pairs) >= 100 and len({p["id"] for p in pairs}) == len(pairs)
    abstracts = {p.title: " ".join(p.abstract.split()) for p in seed_papers}
    for pair in pairs:
        assert " ".join(pair["evidence"].split()) in abstracts[pair["title"]], pair["id"]
    kinds = Counter(p["kind"] for p in pairs)
    assert {"verbatim", "paraphrase", "off_question", "wrong_binding", "wrong_number", "negation"} <= set(kinds)
    supported = sum(p["supported"] for p in pairs)
    assert 0.3 < supported / len(pairs) < 0.7
    assert all(p["supported"] and not p["answers"] for p in pairs if p["kind"] == "off_question")


def test_confusion_counts():
    got = confusion([(True, True), (True, False), (False, True), (False, False), (False, False)])
    assert (got["tp"], got["fn"], got["fp"], got["tn"]) == (1, 1, 1, 2)
    assert got["accuracy"] == 0.6 and got["precision"] == 0.5 and got["recall"] == 0.5
    assert confusion([])["accuracy"] is None


def test_check_judge_scores_each_label_and_kind(tmp_path):
    pairs = [
        {"id": "a", "kind": "verbatim", "question": "What BLEU?", "claim": "It gets 28.4 BLEU on WMT.",
         "evidence": "It gets 28.4 BLEU on WMT.", "supported": True, "answers": True},
        {"id": "b", "kind": "wrong_number", "question": "What BLEU?", "claim": "It gets 29.4 BLEU on WMT.",
         "evidence": "It gets 28.4 BLEU on WMT.", "supported": False, "answers": True},
        {"id": "c", "kind": "off_question", "question": "What BLEU?", "claim": "Training is fast.",
         "evidence": "Training is fast and simple.", "supported": True, "answers": False},
    ]
    says_yes_to_bleu = Judges(lambda claim, evidence: 0.2, lambda q, a: 0.9 if "BLEU" in a else 0.1, "test")
    result = check_judge(pairs, says_yes_to_bleu, progress=False)
    # a: restates its evidence; b: the number check fails; c: the judge's 0.2 says unsupported
    assert [r["supported_verdict"] for r in result["rows"]] == [True, False, False]
    assert result["supported"]["accuracy"] == pytest.approx(0.6667, abs=1e-4)
    assert result["answers"]["accuracy"] == 1.0
    assert result["supported_by_kind"]["off_question"]["accuracy"] == 0.0
    report = format_report(result, "pairs.jsonl")
    assert "| supported | 0.667 |" in report and "## `answers` by kind of case" in report


def test_bad_pair_files_name_the_line(tmp_path: Path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"id": "x", "question": "q", "claim": "c", "evidence": "e", "kind": "k",
                                "supported": "yes", "answers": True}) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="line 1"):
        load_pairs(path)
    with pytest.raises(CorpusError, match="cannot read"):
        load_pairs(tmp_path / "missing.jsonl")
