"""``python -m rag calibrate``: fit the refusal classifier for a model on the dev split.

Every dev question is answered with refusals by the classifier switched off
(``never_refuse``), the classifier's inputs are recorded with whether the question is
answerable, and ``rag.refusal.fit`` chooses weights and thresholds by cross-validation. Each
answerable dev question is also asked with its gold papers withheld from retrieval
(``rag.evaluation.questions.withheld``), as an unanswerable one: written unanswerable questions are
few and of a few kinds, while a relevant-looking paper that does not hold the answer is what
the classifier must learn to catch on questions it has never seen. The test split is never
read. Questions that retrieval alone refuses (nothing relevant) are
refused whatever the classifier says, so they are left out of the fit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import Settings
from ..refusal import FEATURES, MAX_UNANSWERED, calibration_name, calibration_path, fit
from .questions import load_questions, withheld


def collect(settings: Settings, questions_path: str | Path, progress: bool = True,
            pipeline: Any = None, gold_withheld: bool = True) -> list[dict[str, Any]]:
    """One row per dev question (and, with ``gold_withheld``, per withheld variant) that
    reached the model: its features, label and answer."""
    from tqdm import tqdm

    from ..pipeline import Pipeline
    from .run import without

    pipeline = pipeline or Pipeline(settings.with_overrides(never_refuse=True))
    pipeline.warm_up()
    questions = load_questions(questions_path, "dev")
    questions += withheld(questions) if gold_withheld else []
    papers = pipeline.index.papers() if gold_withheld else []
    rows = []
    for q in tqdm(questions, desc="calibrate", unit="question", disable=not progress):
        answer = pipeline.ask(q.question, filters=without(papers, q.withhold) if q.withhold else None)
        if not answer.signals:
            continue
        rows.append({"id": q.id, "type": q.type, "answerable": q.answerable, **answer.signals,
                     "question": q.question,
                     "answer": answer.text, "raw_answer": answer.raw_text,
                     "cited": [c.title for c in answer.citations], "gold_titles": q.gold_titles,
                     "keywords": q.keywords})
    return rows


def calibrate(settings: Settings, questions_path: str | Path, out_dir: str | Path,
              max_false_refusals: float = MAX_UNANSWERED, progress: bool = True) -> dict[str, Any]:
    """Collect the dev rows, fit, and write the calibration next to the model specs (and the
    rows under ``out_dir`` so a refit needs no model). Returns the cross-validated figures."""
    rows = collect(settings, questions_path, progress)
    name = calibration_name(settings.model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / f"{name}-dev-rows.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return refit(rows, settings.model, max_false_refusals)


def refit(rows: list[dict[str, Any]], model: str, max_false_refusals: float = MAX_UNANSWERED) -> dict[str, Any]:
    """Fit the classifier on collected ``rows`` and save it for ``model``."""
    n_withheld = sum(1 for r in rows if str(r["id"]).endswith("-withheld"))
    refusal, figures = fit(rows, max_false_refusals, fitted_on=(
        f"dev split, {len(rows) - n_withheld} questions and {n_withheld} with gold papers withheld"))
    refusal.save(path := calibration_path(model))
    return {"model": model, "calibration": str(path.name), "cross_validated": figures,
            "weights": dict(zip(FEATURES, (round(w, 3) for w in refusal.weights)))}
