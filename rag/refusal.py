"""Answer or refuse: a small calibrated classifier over signals that alone overlap.

No single signal separates answerable from unanswerable questions: a near miss ("which
licence were the checkpoints released under?") retrieves its paper with high similarity, and
a verified sentence about that paper exists. Together they separate better. For every
question that reaches the model, ``features`` measures:

* ``similarity`` (best chunk cosine) and ``fused`` (hybrid score) of the first paper;
* ``best_sentence``: relevance of the best abstract sentence to the question;
* ``paper_coverage`` / ``answer_coverage``: IDF-weighted share of the question's terms
  found in the cited paper / in the answer (rare terms such as "licence" weigh most);
* ``missing_rare``: how rare the rarest question term missing from the cited paper is;
* ``lead``: the model's own sentence survived verification and the focus checks;
* ``degenerate``: the model wrote nothing usable ("", "NOT FOUND", "[1]");
* ``value_missing``: a value was asked for and the answer holds none;
* ``relevance``: cosine similarity of question and answer.

``RefusalModel`` is a logistic regression on them with two thresholds, fitted on the
dev split by ``python -m rag calibrate`` (cross-validated) and stored per model under
``rag/calibration/``: at or above ``threshold`` the verified answer is given; below it the
question gets the *related* outcome (the closest evidence, cited, marked as not an answer),
and below ``related_threshold`` the plain "not in the papers", which is kept for the
questions that almost no answerable question scores as low as. A model without a calibration uses the default model's, since the
features are mostly about retrieval and evidence, not the model.

>>> m = RefusalModel(("lead",), (2.0,), (0.0,), (1.0,), -1.0, 0.5)
>>> round(m.probability({"lead": 1.0}), 3), m.refuse({"lead": 0.0})
(0.731, True)
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

FEATURES = ("similarity", "fused", "best_sentence", "paper_coverage", "missing_rare",
            "answer_coverage", "lead", "degenerate", "value_missing", "relevance")
CALIBRATION_DIR = Path(__file__).parent / "calibration"
DEFAULT_CALIBRATION = "qwen2.5-coder-0.5b"
REGULARIZATION = 0.3  # inverse L2 strength: a few hundred rows, ten correlated signals
MAX_UNANSWERED = 0.16  # cross-validated share of answerable questions not answered (they get "related")
MAX_NOT_FOUND = 0.02  # ... and of those told "not in the papers"


def weighted_coverage(terms: list[str], text_terms: set[str], idf: Callable[[str], float]) -> float:
    """IDF-weighted share of ``terms`` in ``text_terms`` (1.0 when there are no terms).

    >>> weighted_coverage(["licenc", "model"], {"model"}, lambda t: {"licenc": 3.0}.get(t, 1.0))
    0.25
    """
    weights = {t: idf(t) for t in dict.fromkeys(terms)}
    total = sum(weights.values())
    return sum(w for t, w in weights.items() if t in text_terms) / total if total else 1.0


def rarest_missing(terms: list[str], text_terms: set[str], idf: Callable[[str], float]) -> float:
    """IDF of the rarest question term absent from the paper, over the IDF of an unseen term
    (0.0 when every term is there): "licence" missing from a paper about code models.

    >>> rarest_missing(["licenc", "model"], {"model"}, lambda t: {"licenc": 3.0, "model": 0.5}.get(t, 6.0))
    0.5
    """
    missing = [idf(t) for t in dict.fromkeys(terms) if t not in text_terms]
    return max(missing, default=0.0) / max(idf("zzz unseen zzz"), 1e-9)


@dataclass(frozen=True)
class RefusalModel:
    """Logistic regression over standardised ``features``; answer at or above ``threshold``,
    say "not in the papers" below ``related_threshold`` (``None``: the same as ``threshold``)."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    bias: float
    threshold: float
    fitted_on: str = ""  # what it was calibrated on, for the record
    related_threshold: float | None = None

    @property
    def not_found_below(self) -> float:
        """Below this probability the answer is "not in the papers" rather than *related*."""
        return self.threshold if self.related_threshold is None else min(self.related_threshold,
                                                                         self.threshold)

    def probability(self, values: dict[str, float]) -> float:
        """P(the question is answerable from what was found)."""
        z = self.bias + sum(w * (float(values.get(f, 0.0)) - m) / (s or 1.0)
                            for f, w, m, s in zip(self.features, self.weights, self.means, self.scales))
        return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))

    def refuse(self, values: dict[str, float]) -> bool:
        return self.probability(values) < self.threshold

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "RefusalModel":
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def calibration_name(model: str) -> str:
    """File stem of a model spec's calibration: "bundled:qwen2.5-coder-0.5b" -> "qwen2.5-coder-0.5b"."""
    return re.sub(r"[^\w.-]+", "_", model.removeprefix("bundled:")).strip("_") or DEFAULT_CALIBRATION


def calibration_path(model: str) -> Path:
    return CALIBRATION_DIR / f"{calibration_name(model)}.json"


def load_refusal_model(model: str) -> RefusalModel | None:
    """The calibration for ``model``, else the default model's, else ``None``."""
    for path in (calibration_path(model), calibration_path(DEFAULT_CALIBRATION)):
        if path.is_file():
            return RefusalModel.load(path)
    return None


def fit(rows: list[dict[str, Any]], max_false_refusals: float = MAX_UNANSWERED, folds: int = 5,
        seed: int = 0, fitted_on: str = "", max_not_found: float = MAX_NOT_FOUND) -> tuple[RefusalModel, dict[str, Any]]:
    """Fit on ``rows`` (each: the ``FEATURES`` and ``answerable``), choosing both thresholds by
    cross-validation: ``threshold``, the highest whose out-of-fold share of answerable rows
    not answered stays at or below ``max_false_refusals``; ``related_threshold``, the highest
    (not above ``threshold``) whose share of answerable rows told "not in the papers" stays at
    or below ``max_not_found``. Returns the model and its out-of-fold figures."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.array([[float(r[f]) for f in FEATURES] for r in rows])
    y = np.array([1 if r["answerable"] else 0 for r in rows])
    make = lambda: make_pipeline(StandardScaler(), LogisticRegression(C=REGULARIZATION, max_iter=1000))  # noqa: E731
    cv = StratifiedKFold(n_splits=min(folds, int(y.sum()), int(len(y) - y.sum())), shuffle=True,
                         random_state=seed)
    oof = cross_val_predict(make(), x, y, cv=cv, method="predict_proba")[:, 1]
    grid = [round(float(t), 2) for t in np.arange(0.05, 0.951, 0.01)]
    below = lambda t, label: float(np.mean(oof[y == label] < t))  # noqa: E731
    threshold = max((t for t in grid if below(t, 1) <= max_false_refusals), default=0.0)
    related = max((t for t in grid if t <= threshold and below(t, 1) <= max_not_found), default=0.0)
    figures = {"threshold": threshold, "related_threshold": related,
               "false_refusals": round(below(threshold, 1), 4),
               "refusal_recall": round(below(threshold, 0), 4),
               "false_not_found": round(below(related, 1), 4),
               "not_found_recall": round(below(related, 0), 4),
               "n": int(len(y)), "n_answerable": int(y.sum())}
    model = make().fit(x, y)
    scaler, lr = model.steps[0][1], model.steps[1][1]
    refusal = RefusalModel(FEATURES, tuple(float(w) for w in lr.coef_[0]),
                           tuple(float(m) for m in scaler.mean_), tuple(float(s) for s in scaler.scale_),
                           float(lr.intercept_[0]), threshold, fitted_on, related)
    return refusal, figures
