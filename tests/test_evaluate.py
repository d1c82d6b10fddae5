"""The evaluation harness end to end with a scripted generator over the real seed index, the
stock llama-index baseline behind the same generator, and retrieval scored on the real index."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag.evaluation import metrics as M
from rag.evaluation.baseline import is_refusal
from rag.llama_index_adapter import LocalLLM
from rag.cli import app
from rag.config import PROJECT_ROOT
from rag.errors import ModelError
from rag.evaluation.run import compare_runs, format_retrieval, make_judge, retrieval_eval, run_eval
from rag.pipeline import Pipeline

QUESTIONS = PROJECT_ROOT / "eval" / "questions.jsonl"
PICKED = ("q002", "q047", "q063")  # single, numeric, unanswerable (off-topic)
RUN_FILES = ("predictions.jsonl", "metrics.json", "report.md", "per_type.png", "latency.png")


class ReadingGenerator:
    """Answers like a careful reader: restates the first sentence of source 1 of the prompt
    (citewise's ``[1] sentence`` lines or llama-index's ``Source 1:``) in its own framing, so
    the judge is asked, and cites ``[1]``."""

    name = "reading"
    device = "cpu"
    is_loaded = True
    last_timing = None

    def __init__(self, yes: float = 0.9):
        self.yes = yes
        self.prompts: list[list[dict]] = []
        self.judged: list[list[dict]] = []

    def stream(self, messages: list[dict], max_new_tokens: int) -> Iterator[str]:
        self.prompts.append(messages)
        user = messages[-1]["content"]
        blocks = re.findall(r"^\[1\] (.+)$", user, re.M) or re.findall(r"Source 1:\n([^\n]+)", user)
        if not blocks:  # the last one: llama-index's prompt starts with a worked example
            yield "NOT FOUND"
            return
        first = re.split(r"(?<=[.!?])\s+", blocks[-1].strip())[0].rstrip(".")
        yield from re.findall(r"\S+\s*", f"Reportedly, the authors explain that {first} [1].")

    def load(self) -> "ReadingGenerator":
        return self

    def generate(self, messages: list[dict], max_new_tokens: int | None = None) -> str:
        return "".join(self.stream(messages, max_new_tokens))

    def count_tokens(self, messages: list[dict]) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def yes_probability(self, messages: list[dict]) -> float:
        self.judged.append(messages)
        return self.yes


@pytest.fixture()
def questions_file(tmp_path: Path) -> Path:
    lines = [line for line in QUESTIONS.read_text(encoding="utf-8").splitlines()
             if line.strip() and json.loads(line)["id"] in PICKED]
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def make_pipeline(seed_settings, seed_index, embedder):
    def make(generator):
        return Pipeline(seed_settings, generator=generator, embedder=embedder, index=seed_index)

    return make


def read_run(run_dir: Path) -> tuple[dict, list[dict]]:
    for name in RUN_FILES:
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, name
    data = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    items = [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    return data, items


def test_both_systems_write_every_file_and_metric(tmp_path, questions_file, make_pipeline, seed_settings):
    gen = ReadingGenerator(yes=0.9)
    out = tmp_path / "report"
    result = run_eval(seed_settings, questions_file, out, system="both", judge="generator",
                      progress=False, pipeline=make_pipeline(gen))
    assert set(result) == {"citewise", "baseline"}
    for system in ("citewise", "baseline"):
        data, items = read_run(out / system)
        assert set(M.METRIC_KEYS) <= set(data), system
        assert data["run"]["system"] == system and data["run"]["model"] == "reading"
        assert data["n_items"] == 3 and data["n_answerable"] == 2 and data["k"] == seed_settings.top_k
        assert [i["id"] for i in items] == list(PICKED)
        for i in items:
            assert {"id", "type", "question", "answer", "refused", "cited_titles", "retrieved_titles",
                    "seconds", "sentences"} <= set(i)
            assert i["seconds"] >= 0 and i["retrieved_titles"]
            for s in i["sentences"]:
                assert {"text", "citations", "hard_failures", "p", "supported"} <= set(s)
    citewise = {i["id"]: i for i in read_run(out / "citewise")[1]}
    assert citewise["q002"]["cited_titles"] == ["Pointer Networks"]  # the extract of source [1]
    assert citewise["q063"]["refused"]  # sourdough: nothing relevant retrieved
    assert result["citewise"]["fabricated_citations"] == 0
    assert result["citewise"]["retrieval_recall_at_k"] == 1.0
    assert gen.judged  # the generator judged the answer sentences
    judged = [i for i in citewise.values() if i["type"] != "unanswerable" and not i["refused"]]
    assert judged and all(i["answers_question"] is True and i["answers_p"] == 0.9 for i in judged)
    assert result["citewise"]["answers_question"] == pytest.approx(len(judged) / 2)
    assert [i["split"] for i in citewise.values()] == ["dev", "dev", "dev"]
    assert set(json.loads((out / "citewise" / "metrics.json").read_text())["per_split"]) == {"dev"}
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| Metric | citewise | baseline |" in report and "Faithfulness" in report
    for name in ("per_type.png", "latency.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    table = compare_runs(out / "citewise", out / "baseline")
    assert "A: citewise" in table and "B: baseline" in table and "Citation recall" in table
    cli = CliRunner().invoke(app, ["eval", "--compare", str(out / "citewise"), str(out / "baseline")])
    assert cli.exit_code == 0 and cli.output.strip() == table


def test_a_doubting_judge_makes_answers_unfaithful(tmp_path, questions_file, make_pipeline, seed_settings):
    got = run_eval(seed_settings, questions_file, tmp_path / "run", system="citewise", judge="generator",
                   progress=False, pipeline=make_pipeline(ReadingGenerator(yes=0.1)))
    assert got["n_answered"] >= 1 and got["faithfulness"] < 1.0
    data, items = read_run(tmp_path / "run")
    sentences = [s for i in items if not i["refused"] for s in i["sentences"]]
    judged = [s for s in sentences if "restates" not in s and not s["hard_failures"]]
    assert judged and all(s["p"] == pytest.approx(0.1) and not s["supported"] for s in judged)
    # an abstract sentence copied verbatim is supported by construction, whatever the judge says
    assert all(s["supported"] for s in sentences if "restates" in s)


def test_baseline_dir_gives_a_side_by_side_report(tmp_path, questions_file, make_pipeline, seed_settings):
    pipeline = make_pipeline(ReadingGenerator())
    run_eval(seed_settings, questions_file, tmp_path / "base", system="baseline", judge="none",
             progress=False, pipeline=pipeline)
    run_eval(seed_settings, questions_file, tmp_path / "mine", system="citewise", judge="none",
             progress=False, pipeline=pipeline, baseline_dir=tmp_path / "base")
    report = (tmp_path / "mine" / "report.md").read_text(encoding="utf-8")
    assert "citewise vs baseline" in report and "Δ (citewise − baseline)" in report


def test_splits_are_reported_side_by_side(tmp_path, make_pipeline, seed_settings):
    lines = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    picked = [next(q for q in lines if q["split"] == s and q["type"] == "numeric") for s in ("dev", "test")]
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in picked), encoding="utf-8")
    out = tmp_path / "run"
    got = run_eval(seed_settings, path, out, judge="none", progress=False, pipeline=make_pipeline(ReadingGenerator()))
    data, items = read_run(out)
    assert set(data["per_split"]) == {"dev", "test"} and got["n_items"] == 2
    assert got["answers_question"] is None  # the lexical judge does not judge answers
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Dev and test splits" in report and "citewise test (n=1)" in report
    only_test = run_eval(seed_settings, path, tmp_path / "test", judge="none", progress=False,
                         pipeline=make_pipeline(ReadingGenerator()), split="test")
    assert only_test["n_items"] == 1


def test_retrieval_on_the_real_index(seed_settings, seed_index, embedder):
    pipeline = Pipeline(seed_settings, embedder=embedder, index=seed_index)
    got = retrieval_eval(seed_settings, QUESTIONS, k=5, pipeline=pipeline)
    modes = got["modes"]
    answerable = sum(1 for line in QUESTIONS.read_text(encoding="utf-8").splitlines()
                     if line.strip() and json.loads(line)["type"] != "unanswerable")
    assert got["n"] == answerable and set(modes) == {"dense", "bm25", "hybrid"}
    hybrid = modes["hybrid"]
    assert hybrid["recall_at_k"] >= 0.95, format_retrieval(got)
    assert hybrid["recall_at_k"] >= modes["dense"]["recall_at_k"], format_retrieval(got)
    # within one question of BM25 alone (on 138 questions, 0.964 against 0.967), ranked better
    assert hybrid["recall_at_k"] >= modes["bm25"]["recall_at_k"] - 1.5 / got["n"], format_retrieval(got)
    assert hybrid["mrr"] >= max(modes["dense"]["mrr"], modes["bm25"]["mrr"]), format_retrieval(got)
    assert "| hybrid |" in format_retrieval(got)


def test_local_llm_wraps_the_generator():
    gen = ReadingGenerator()
    llm = LocalLLM(gen, num_output=64)
    assert llm.metadata.context_window == 32768 and llm.metadata.num_output == 64
    prompt = "Source 1:\nPtr-Nets point at input positions. They solve convex hulls.\nQuery: What?\nAnswer: "
    assert llm.complete(prompt).text == "Reportedly, the authors explain that Ptr-Nets point at input positions [1]."
    pieces = list(llm.stream_complete(prompt))
    assert pieces[-1].text == "Reportedly, the authors explain that Ptr-Nets point at input positions [1]." and len(pieces) > 2
    assert gen.prompts[0] == [{"role": "user", "content": prompt}]


@pytest.mark.parametrize("text, refused", [
    ("", True),
    ("Empty Response", True),
    ("None of the sources are helpful in answering this query.", True),
    ("The provided sources do not contain information about sourdough.", True),
    ("I cannot answer this question based on the sources.", True),
    ("Ptr-Nets solve convex hulls [1].", False),
    ("Query: What is it?\nAnswer: Ptr-Nets solve convex hulls [1].", False),
    ("Ptr-Nets solve convex hulls [1]. The sources do not mention runtime.", False),
])
def test_baseline_refusal_detection(text, refused):
    assert is_refusal(text) is refused


def test_unknown_nli_judge_is_a_clear_error():
    with pytest.raises(ModelError, match="--judge generator"):
        make_judge("no-such-org/no-such-nli-model", pipeline=None)


@pytest.mark.parametrize("args, message", [
    (["eval", "--system", "nope", "--limit", "1"], "Unknown system 'nope'"),
    (["eval", "--compare", "/no/such/run", "/no/such/other"], "not a finished evaluation run"),
])
def test_eval_cli_errors_are_one_line(args, message):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_withheld_gold_questions_never_retrieve_their_gold_paper(tmp_path, questions_file, make_pipeline,
                                                                seed_settings):
    got = run_eval(seed_settings, questions_file, out := tmp_path / "withheld", system="citewise",
                   judge="none", progress=False, pipeline=make_pipeline(ReadingGenerator()),
                   withheld_gold=True)
    data, items = read_run(out)
    originals = {json.loads(x)["id"]: json.loads(x) for x in questions_file.read_text().splitlines()}
    assert [i["id"] for i in items] == ["q002-withheld", "q047-withheld"]  # the answerable ones
    for i in items:
        gold = originals[i["id"].removesuffix("-withheld")]["gold_titles"]
        assert i["type"] == M.UNANSWERABLE and i["retrieved_titles"]
        assert not set(map(M.normalize_title, gold)) & set(map(M.normalize_title, i["retrieved_titles"]))
        assert i["outcome"] in ("answered", "related", "not_found")
    assert data["run"]["gold_withheld"] is True and got["n_unanswerable"] == 2
    with pytest.raises(Exception, match="citewise only"):
        run_eval(seed_settings, questions_file, tmp_path / "b", system="baseline", judge="none",
                 progress=False, pipeline=make_pipeline(ReadingGenerator()), withheld_gold=True)
