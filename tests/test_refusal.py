"""The answer-or-refuse classifier: features, fitting with a cross-validated threshold, storage."""

from __future__ import annotations

import random

import pytest

from rag.refusal import (
    FEATURES,
    RefusalModel,
    calibration_name,
    fit,
    load_refusal_model,
    weighted_coverage,
)


def test_weighted_coverage_weighs_rare_terms():
    idf = {"licenc": 5.0, "checkpoint": 1.0, "model": 0.5}.get
    assert weighted_coverage(["licenc", "checkpoint", "model"], {"checkpoint", "model"}, idf) == pytest.approx(1.5 / 6.5)
    assert weighted_coverage([], {"x"}, idf) == 1.0


def _rows(n: int, seed: int = 0) -> list[dict]:
    """Answerable rows have higher coverage and more often a lead; noise keeps them overlapping."""
    rng, rows = random.Random(seed), []
    for i in range(n):
        answerable = i % 3 != 0
        base = 0.7 if answerable else 0.4
        row = {f: rng.gauss(0.5, 0.1) for f in FEATURES}
        row.update(paper_coverage=rng.gauss(base, 0.12), lead=float(rng.random() < (0.8 if answerable else 0.3)),
                   answerable=answerable)
        rows.append(row)
    return rows


def test_fit_separates_and_keeps_false_refusals_under_the_cap(tmp_path):
    model, figures = fit(_rows(150), max_false_refusals=0.1)
    assert figures["false_refusals"] <= 0.1 and figures["refusal_recall"] > 0.4
    weights = dict(zip(model.features, model.weights))
    assert weights["paper_coverage"] > 0 and weights["lead"] > 0
    held_out = _rows(90, seed=1)
    refused = [model.refuse(r) for r in held_out]
    assert sum(refused[i] for i, r in enumerate(held_out) if not r["answerable"]) > sum(
        refused[i] for i, r in enumerate(held_out) if r["answerable"])
    model.save(path := tmp_path / "m.json")
    assert RefusalModel.load(path) == model


def test_calibrations_are_found_per_model_with_the_default_as_fallback():
    assert calibration_name("bundled:qwen2.5-coder-1.5b") == "qwen2.5-coder-1.5b"
    assert calibration_name("Qwen/Qwen2.5-7B-Instruct") == "Qwen_Qwen2.5-7B-Instruct"
    shipped = load_refusal_model("bundled:qwen2.5-coder-0.5b")
    assert shipped is not None and shipped.features == FEATURES and 0 < shipped.threshold < 1
    assert load_refusal_model("some/unknown-model") == shipped


def test_fit_chooses_a_lower_not_found_threshold_under_its_own_cap():
    model, figures = fit(_rows(150), max_false_refusals=0.2, max_not_found=0.02)
    assert model.related_threshold is not None and model.related_threshold <= model.threshold
    assert model.not_found_below == model.related_threshold
    assert figures["false_not_found"] <= 0.02 <= figures["false_refusals"] + 0.02
    assert figures["not_found_recall"] <= figures["refusal_recall"]


def test_an_old_calibration_without_the_band_says_not_found_below_its_threshold(tmp_path):
    import json

    model, _ = fit(_rows(150))
    data = {k: v for k, v in model.__dict__.items() if k != "related_threshold"}
    (path := tmp_path / "old.json").write_text(json.dumps(data), encoding="utf-8")
    old = RefusalModel.load(path)
    assert old.related_threshold is None and old.not_found_below == old.threshold
