"""How good is the evaluation's judge? Its verdicts against hand labels (``eval/judge_pairs.jsonl``).

Each line holds a ``question``, one answer sentence (``claim``), the abstract sentences it
cites (``evidence``, verbatim), and two hand labels: ``supported`` (the evidence states the
claim) and ``answers`` (the claim gives what the question asks for), plus the ``kind`` of
case (``verbatim``, ``paraphrase``, ``off_question``, ``wrong_binding``, ``wrong_number``,
``entity_swap``, ``negation``, ``overclaim``, ``question_echo``, ``partial``).
``check_judge`` runs the evaluation's own verdicts on them: ``rag.evaluation.metrics.judge_sentence``
(hard checks, then the restatement rule, then the model) for support, and the answer judge
for ``answers``, and reports accuracy overall and per kind.

>>> confusion([(True, True), (True, False), (False, False)])["accuracy"]
0.6667
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import CorpusError
from . import metrics as M

LABELS = ("supported", "answers")


def load_pairs(path: str | Path) -> list[dict[str, Any]]:
    """The labelled pairs of a JSON-lines file; a clear error names a bad line."""
    pairs = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CorpusError(f"cannot read the judge pairs {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            pair = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
        missing = [k for k in ("id", "question", "claim", "evidence", "kind", *LABELS) if k not in pair]
        if missing or not all(isinstance(pair[k], bool) for k in LABELS):
            raise CorpusError(f"{path}, line {number}: needs id, question, claim, evidence, kind and "
                              f"boolean {' and '.join(LABELS)} (missing: {', '.join(missing) or 'none'})")
        pairs.append(pair)
    return pairs


def confusion(verdicts: Sequence[tuple[bool, bool]]) -> dict[str, Any]:
    """Accuracy, precision and recall of the positive class for ``(label, verdict)`` pairs."""
    tp = sum(1 for y, v in verdicts if y and v)
    fp = sum(1 for y, v in verdicts if not y and v)
    fn = sum(1 for y, v in verdicts if y and not v)
    tn = sum(1 for y, v in verdicts if not y and not v)
    n = len(verdicts)
    return {"n": n, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "accuracy": round((tp + tn) / n, 4) if n else None,
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None}


def check_judge(pairs: Sequence[dict[str, Any]], judges: Any, progress: bool = True) -> dict[str, Any]:
    """The judge's verdicts on ``pairs`` against their labels (``judges``: ``rag.evaluation.run.Judges``)."""
    from tqdm import tqdm

    rows = []
    for pair in tqdm(pairs, desc="judge", unit="pair", disable=not progress):
        support = M.judge_sentence(pair["claim"], pair["evidence"], judges.support)
        row = {"id": pair["id"], "kind": pair["kind"], "supported": pair["supported"],
               "supported_verdict": bool(support["supported"]), "supported_p": support["p"],
               "hard_failures": support["hard_failures"], "answers": pair["answers"]}
        if judges.answers is not None:
            p = float(judges.answers(pair["question"], pair["claim"]))
            row.update(answers_verdict=p >= M.THRESHOLD, answers_p=round(p, 4))
        rows.append(row)
    out: dict[str, Any] = {"judge": judges.name, "n": len(rows), "rows": rows}
    for label in LABELS:
        if all(f"{label}_verdict" in r for r in rows):
            out[label] = confusion([(r[label], r[f"{label}_verdict"]) for r in rows])
            kinds = dict.fromkeys(r["kind"] for r in rows)
            out[f"{label}_by_kind"] = {k: confusion([(r[label], r[f"{label}_verdict"]) for r in rows
                                                     if r["kind"] == k]) for k in kinds}
    return out


def format_report(result: dict[str, Any], pairs_path: str) -> str:
    """The judge check as Markdown."""
    lines = [f"# The evaluation judge against {result['n']} hand-labelled pairs", "",
             f"Pairs: `{pairs_path}`; judge: {result['judge']}.", "",
             "| Verdict | accuracy | precision | recall | TP | FP | FN | TN |", "|---|---|---|---|---|---|---|---|"]
    for label in LABELS:
        if (c := result.get(label)) is not None:
            lines.append(f"| {label} | {M.format_value('', c['accuracy'])} | {M.format_value('', c['precision'])} "
                         f"| {M.format_value('', c['recall'])} | {c['tp']} | {c['fp']} | {c['fn']} | {c['tn']} |")
    for label in LABELS:
        if (by_kind := result.get(f"{label}_by_kind")) is None:
            continue
        lines += ["", f"## `{label}` by kind of case", "", "| kind | n | accuracy |", "|---|---|---|"]
        lines += [f"| {k} | {c['n']} | {M.format_value('', c['accuracy'])} |" for k, c in by_kind.items()]
    return "\n".join(lines) + "\n"
