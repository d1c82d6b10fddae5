"""The shipped evaluation question set is sound, and the checker finds every kind of fault."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from rag.config import PROJECT_ROOT
from rag.corpus import normalize_title
from rag.errors import CorpusError
from rag.evaluation.questions import (
    NOT_IN_CORPUS,
    Question,
    load_questions,
    question_stats,
    validate_questions,
)
from rag.types import Paper

QUESTIONS_FILE = PROJECT_ROOT / "eval" / "questions.jsonl"


@pytest.fixture(scope="module")
def shipped() -> list[Question]:
    return load_questions(QUESTIONS_FILE)


# --- the shipped file --------------------------------------------------------------------


def test_shipped_questions_validate_against_the_seed_corpus(shipped, seed_papers):
    assert validate_questions(shipped, seed_papers) == []


def test_shipped_question_counts(shipped):
    stats = question_stats(shipped)
    assert stats["total"] >= 60
    assert stats["unanswerable"] >= 10
    assert stats["answerable_with_gold"] >= 25
    assert min(stats["single"], stats["numeric"], stats["multi"]) >= 5
    assert sum(stats[t] for t in ("single", "numeric", "multi", "unanswerable")) == len(shipped)


def test_a_frozen_test_split_of_every_type(shipped):
    test = [q for q in shipped if q.split == "test"]
    assert len(test) >= 0.4 * len(shipped)
    stats = question_stats(test)
    assert stats["multi"] >= 15 and stats["unanswerable"] >= 15
    assert sum(1 for q in test if q.type == "unanswerable" and q.note) >= stats["unanswerable"] / 2
    assert min(stats["single"], stats["numeric"]) >= 10
    assert [q.id for q in load_questions(QUESTIONS_FILE, "test")] == [q.id for q in test]


def test_an_unknown_split_is_refused(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(_record(split="holdout")) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="invalid split 'holdout'"):
        load_questions(path)
    with pytest.raises(CorpusError, match="unknown split"):
        load_questions(path, "train")


def test_near_miss_notes_name_a_corpus_paper(shipped, seed_papers):
    titles = [p.title for p in seed_papers]
    notes = [q.note for q in shipped if q.type == "unanswerable" and q.note]
    assert len(notes) >= 8
    for note in notes:
        assert any(title in note for title in titles), note


def test_questions_do_not_quote_their_gold_titles(shipped):
    for q in shipped:
        for title in q.gold_titles:
            assert normalize_title(title) not in normalize_title(q.question), q.id


def test_multi_items_cite_at_least_two_papers(shipped):
    assert all(len(q.gold_titles) >= 2 for q in shipped if q.type == "multi")


# --- the validator -----------------------------------------------------------------------

PAPERS = [
    Paper("pointer-networks", "Pointer Networks",
          "We introduce a new neural architecture. It reaches 28.4 points on the task."),
    Paper("layer-normalization", "Layer Normalization",
          "We transpose batch normalization into layer normalization. It is fast."),
]
GOOD = Question("q1", "Which architecture reaches 28.4 points?", "single", ["Pointer Networks"],
                ["It reaches 28.4 points on the task."], "It reaches 28.4 points.", ["28.4"])
MULTI = Question("q2", "Which papers?", "multi", ["Pointer Networks", "Layer Normalization"],
                 ["We introduce a new neural architecture.", "It is fast."], "Both.", ["fast"])
NONE = Question("q3", "How do I bake bread?", "unanswerable", [], [], NOT_IN_CORPUS, [])


def test_good_items_have_no_problems():
    assert validate_questions([GOOD, MULTI, NONE], PAPERS) == []


def test_titles_match_normalised_and_evidence_whitespace_normalised():
    item = replace(GOOD, gold_titles=["pointer   NETWORKS!"],
                   evidence=["It reaches\n28.4   points on the task."])
    assert validate_questions([item], PAPERS) == []


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([replace(GOOD, gold_titles=["Pointer Nets"])], "unknown gold title"),
        ([replace(GOOD, evidence=["It reaches 28.5 points on the task."])], "not found verbatim"),
        ([replace(MULTI, evidence=["It reaches 28.4 points on the task.", "It is fast today."])],
         "not found verbatim"),
        ([GOOD, replace(MULTI, id="q1")], "duplicate id"),
        ([replace(NONE, gold_titles=["Pointer Networks"])], "unanswerable but has gold titles"),
        ([replace(NONE, answer="Use a hot oven.")], "answer is not NOT_IN_CORPUS"),
        ([replace(NONE, keywords=["oven"])], "unanswerable but has evidence or keywords"),
        ([replace(GOOD, gold_titles=[])], "has no gold_titles"),
        ([replace(GOOD, evidence=[])], "has no evidence"),
        ([replace(GOOD, keywords=[])], "has no keywords"),
        ([replace(GOOD, answer=NOT_IN_CORPUS)], "answer is NOT_IN_CORPUS"),
        ([replace(GOOD, keywords=["28.4", "99.9"])], "keyword '99.9'"),
        ([replace(MULTI, gold_titles=["Layer Normalization"], evidence=["It is fast."])],
         "fewer than two gold titles"),
    ],
)
def test_validator_reports_each_problem(items, expected):
    problems = validate_questions(items, PAPERS)
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert problems[0].startswith(items[-1].id)


def test_question_stats_counts_every_type():
    stats = question_stats([GOOD, MULTI, NONE, NONE])
    assert stats == {"single": 1, "numeric": 0, "multi": 1, "unanswerable": 2, "total": 4,
                     "answerable_with_gold": 2}


# --- loading -----------------------------------------------------------------------------


def _record(**overrides) -> dict:
    record = {"id": "q1", "question": "Which architecture?", "type": "single",
              "gold_titles": ["Pointer Networks"], "evidence": ["It is fast."],
              "answer": "A pointer.", "keywords": ["pointer"]}
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not None}


def test_load_questions_reads_items_skipping_blank_lines(tmp_path):
    path = tmp_path / "q.jsonl"
    near = _record(id="q2", type="unanswerable", gold_titles=[], evidence=[],
                   answer=NOT_IN_CORPUS, keywords=[], note="Near 'Pointer Networks'.")
    path.write_text(json.dumps(_record()) + "\n\n" + json.dumps(near) + "\n", encoding="utf-8")
    first, second = load_questions(path)
    assert first == Question("q1", "Which architecture?", "single", ["Pointer Networks"],
                             ["It is fast."], "A pointer.", ["pointer"])
    assert (second.note, second.answerable, first.answerable) == ("Near 'Pointer Networks'.",
                                                                  False, True)


@pytest.mark.parametrize(
    ("second_line", "expected"),
    [
        ('{"id": "q2", "question": ', "line 2: not valid JSON"),
        (json.dumps(_record(id="q2", answer=None)), "line 2: missing field(s) answer"),
        (json.dumps(_record(id="q2", keywords=None, evidence=None)),
         "line 2: missing field(s) evidence, keywords"),
        (json.dumps(_record(id="q2", type="trivia")), "line 2: invalid type 'trivia'"),
        (json.dumps(["not", "an", "object"]), "line 2: expected one JSON object"),
        (json.dumps(_record(id="q2", gold_titles="Pointer Networks")),
         "line 2: 'gold_titles' must be a list"),
        (json.dumps(_record(id="q2", question="  ")), "line 2: 'question' must be a non-empty"),
        (json.dumps(_record(id="q2", note=3)), "line 2: 'note' must be a string"),
    ],
)
def test_load_questions_names_the_bad_line(tmp_path, second_line, expected):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(_record()) + "\n" + second_line + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="q.jsonl") as info:
        load_questions(path)
    assert expected in str(info.value)


def test_load_questions_on_a_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="cannot read the question file"):
        load_questions(tmp_path / "absent.jsonl")
