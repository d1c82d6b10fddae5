"""The evaluation question set (``eval/questions.jsonl``): loading, checking, counting.

One JSON object per line with ``id``, ``question``, ``type`` (``single``, ``numeric``,
``multi`` or ``unanswerable``), ``gold_titles``, ``evidence`` (sentences copied verbatim from
the gold abstracts), ``answer`` (``NOT_IN_CORPUS`` when unanswerable), ``keywords`` (what a
correct answer must contain), ``split`` (``dev``, tuned on, or ``test``, frozen and only
reported) and an optional ``note``.

``withheld`` derives a second kind of unanswerable question from the answerable ones: the
same question with its gold papers taken out of retrieval, so the papers around it are still
found but the one that answers it is not. It measures "a supported sentence beside the point"
on questions nobody wrote to be unanswerable.

>>> q = Question("q1", "Who?", "unanswerable", [], [], NOT_IN_CORPUS, [])
>>> question_stats([q])["unanswerable"]
1
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rag.corpus import normalize_title
from rag.errors import CorpusError

NOT_IN_CORPUS = "NOT_IN_CORPUS"
QUESTION_TYPES = ("single", "numeric", "multi", "unanswerable")
#: ``dev``: tune on it; ``test``: frozen, reported, never looked at while tuning.
SPLITS = ("dev", "test")
_TEXT_FIELDS = ("id", "question", "type", "answer")
_LIST_FIELDS = ("gold_titles", "evidence", "keywords")


@dataclass
class Question:
    """One evaluation item; ``note`` says, for a near-miss, which paper it is near."""

    id: str
    question: str
    type: str
    gold_titles: list[str]
    evidence: list[str]
    answer: str
    keywords: list[str]
    note: str | None = None
    split: str = "dev"
    withhold: tuple[str, ...] = ()  # titles kept out of retrieval (``withheld`` variants)

    @property
    def answerable(self) -> bool:
        return self.type != "unanswerable"


def _question_from(record: Any, where: str) -> Question:
    if not isinstance(record, dict):
        raise CorpusError(f"{where}: expected one JSON object per line, got "
                          f"{type(record).__name__}")
    if missing := [k for k in _TEXT_FIELDS + _LIST_FIELDS if k not in record]:
        raise CorpusError(f"{where}: missing field(s) {', '.join(missing)}; every question "
                          f"needs {', '.join(_TEXT_FIELDS + _LIST_FIELDS)}")
    for key in _TEXT_FIELDS:
        if not isinstance(record[key], str) or not record[key].strip():
            raise CorpusError(f"{where}: '{key}' must be a non-empty string")
    for key in _LIST_FIELDS:
        items = record[key]
        if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items):
            raise CorpusError(f"{where}: '{key}' must be a list of non-empty strings")
    if record["type"] not in QUESTION_TYPES:
        raise CorpusError(f"{where}: invalid type '{record['type']}'; use one of "
                          f"{', '.join(QUESTION_TYPES)}")
    if (note := record.get("note")) is not None and not isinstance(note, str):
        raise CorpusError(f"{where}: 'note' must be a string when given")
    if (split := record.get("split", "dev")) not in SPLITS:
        raise CorpusError(f"{where}: invalid split {split!r}; use one of {', '.join(SPLITS)}")
    return Question(**{k: record[k] for k in _TEXT_FIELDS + _LIST_FIELDS}, note=note, split=split)


def load_questions(path: str | Path, split: str | None = None) -> list[Question]:
    """Questions of a JSON-lines file, in file order (blank lines are skipped); only those of
    ``split`` (``dev`` or ``test``) when it is given."""
    if split is not None and split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CorpusError(f"cannot read the question file {path}: {e}") from None
    questions = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{where}: not valid JSON ({e.msg}); write one JSON object "
                              "per line") from None
        questions.append(_question_from(record, where))
    return [q for q in questions if split is None or q.split == split]


def _squash(text: str) -> str:  # whitespace-normalised
    return " ".join(text.split())


def validate_questions(questions: Sequence[Question],
                       papers: Iterable[Any]) -> list[str]:
    """Human-readable problems of a question set checked against ``papers`` (anything with
    ``title`` and ``abstract``); [] when the set is sound. Evidence must be a substring of a
    gold abstract after whitespace is collapsed; titles match by :func:`normalize_title`."""
    abstracts = {normalize_title(p.title): _squash(p.abstract) for p in papers}
    problems: list[str] = []
    for qid, count in Counter(q.id for q in questions).items():
        if count > 1:
            problems.append(f"{qid}: duplicate id ({count} items)")
    for q in questions:
        if not q.answerable:
            if q.gold_titles:
                problems.append(f"{q.id}: unanswerable but has gold titles")
            if q.answer != NOT_IN_CORPUS:
                problems.append(f"{q.id}: unanswerable but the answer is not {NOT_IN_CORPUS}")
            if q.evidence or q.keywords:
                problems.append(f"{q.id}: unanswerable but has evidence or keywords")
            continue
        for key in ("gold_titles", "evidence", "keywords"):
            if not getattr(q, key):
                problems.append(f"{q.id}: answerable ({q.type}) but has no {key}")
        if q.type == "multi" and len(q.gold_titles) < 2:
            problems.append(f"{q.id}: multi but has fewer than two gold titles")
        if q.answer == NOT_IN_CORPUS:
            problems.append(f"{q.id}: answerable ({q.type}) but the answer is {NOT_IN_CORPUS}")
        gold = []
        for title in q.gold_titles:
            if (abstract := abstracts.get(normalize_title(title))) is None:
                problems.append(f"{q.id}: unknown gold title '{title}'")
            else:
                gold.append(abstract)
        if gold:
            for sentence in q.evidence:
                if not any(_squash(sentence) in abstract for abstract in gold):
                    problems.append(f"{q.id}: evidence not found verbatim in the gold "
                                    f"abstract(s): '{sentence[:80]}'")
        support = _squash(" ".join(q.evidence) + " " + q.answer).casefold()
        for keyword in q.keywords:
            if _squash(keyword).casefold() not in support:
                problems.append(f"{q.id}: keyword '{keyword}' is in neither the evidence "
                                "nor the answer")
    return problems


def question_stats(questions: Iterable[Question]) -> dict[str, int]:
    """Counts per type (every type listed, zero included), plus ``total`` and
    ``answerable_with_gold``."""
    questions = list(questions)
    stats = {t: 0 for t in QUESTION_TYPES}
    stats.update(Counter(q.type for q in questions))
    stats["total"] = len(questions)
    stats["answerable_with_gold"] = sum(1 for q in questions if q.answerable and q.gold_titles)
    return stats


def withheld(questions: Iterable[Question]) -> list[Question]:
    """Each answerable question as an unanswerable one: its gold papers withheld from
    retrieval (``withhold``), the rest of the corpus searched as usual.

    >>> q = Question("q7", "What does X reach?", "numeric", ["X Paper"], ["X reaches 9."], "9", ["9"])
    >>> w = withheld([q])[0]
    >>> w.id, w.type, w.answerable, w.withhold
    ('q7-withheld', 'unanswerable', False, ('X Paper',))
    """
    return [replace(q, id=f"{q.id}-withheld", type="unanswerable", gold_titles=[], evidence=[],
                    answer=NOT_IN_CORPUS, keywords=[], withhold=tuple(q.gold_titles),
                    note=f"gold paper(s) withheld: {'; '.join(q.gold_titles)}")
            for q in questions if q.answerable and q.gold_titles]
