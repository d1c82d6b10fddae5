"""Faithfulness evaluation: every question of ``eval/questions.jsonl`` through the real pipeline.

``run_eval`` answers each question with citewise and/or the stock llama-index baseline (one
``Pipeline``, so the model loads once), judges every answer sentence against the abstracts it
cites, and writes to ``out_dir``: ``predictions.jsonl``, ``metrics.json``, ``report.md``,
``per_type.png`` and ``latency.png``. Metric definitions live in ``rag.evaluation.metrics``.
``retrieval_eval`` scores retrieval alone (no model) for the dense, BM25 and hybrid modes.

>>> metrics = run_eval(Settings(), "eval/questions.jsonl", "eval/reports/latest", limit=3)  # doctest: +SKIP
>>> print(compare_runs("eval/reports/latest/citewise", "eval/reports/latest/baseline"))    # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from ..citations import citations_removed, parse_citations, support_score
from ..compute_thread import run_on_compute_thread
from ..config import Settings
from ..corpus import normalize_title
from ..errors import ConfigError, ModelError, QuestionError
from ..prompts import answers_messages, judge_messages
from ..store import portable_path
from ..types import Filters, Paper
from . import metrics as M
from .questions import Question, load_questions, withheld

SYSTEMS = ("citewise", "baseline")
LARGE_JUDGE = "bundled:qwen2.5-coder-1.5b"  # the evaluation's judge when it is installed
PLOTTED = ("accuracy", "faithfulness", "citation_recall", "retrieval_recall_at_k")
TYPE_COLUMNS = ("retrieval_recall_at_k", "citation_precision", "citation_recall", "faithfulness",
                "keyword_all", "refusal_recall", "accuracy")


# --- judges ----------------------------------------------------------------------------------
@dataclass
class Judges:
    """``support(claim, evidence)``: P(the evidence states the claim); ``answers(question,
    answer)``: P(the answer gives what the question asks for), or ``None`` (not measured);
    ``name``: what judged, for the report."""

    support: M.Judge
    answers: M.Judge | None
    name: str


def judge_generator(judge_model: str | None, pipeline: Any) -> Any:
    """The model that judges: ``judge_model`` (``None``: the pipeline's own generator;
    ``auto``: the bundled 1.5B model when it is installed, else the pipeline's generator)."""
    from ..generation import make_generator
    from ..generation.models import BUNDLED, bundled_parts

    if not judge_model:
        return pipeline.generator
    if judge_model == "auto":
        try:
            bundled_parts(BUNDLED[LARGE_JUDGE])
            judge_model = LARGE_JUDGE
        except ModelError:
            return pipeline.generator
    if judge_model == pipeline.settings.model and not pipeline.settings.openai_url:
        return pipeline.generator
    return make_generator(pipeline.settings.with_overrides(model=judge_model, openai_url=None))


def make_judge(kind: str, pipeline: Any, judge_model: str | None = None) -> Judges:
    """``generator``: a local model's P(yes) (``judge_model``, see ``judge_generator``) for both
    questions; ``none``: the lexical ``support_score`` and no answer judge; anything else: a
    Hugging Face NLI model id or folder (entailment probability) and no answer judge."""
    if kind == "generator":
        gen = judge_generator(judge_model, pipeline)
        return Judges(lambda claim, evidence: gen.yes_probability(judge_messages(claim, evidence)),
                      lambda question, answer: gen.yes_probability(answers_messages(question, answer)),
                      f"generator ({gen.name})")
    if kind == "none":
        return Judges(lambda claim, evidence: support_score(claim, evidence).score, None, "none (lexical)")
    try:
        from transformers import pipeline as hf_pipeline

        classify = hf_pipeline("text-classification", model=kind, top_k=None)
    except Exception as exc:  # noqa: BLE001 - any load failure is the same user problem
        raise ModelError(f"Cannot load the NLI judge {kind!r} ({type(exc).__name__}: {exc}). Use "
                         "--judge generator or --judge none, or a model available offline.") from None

    def nli(claim: str, evidence: str) -> float:
        scores = run_on_compute_thread(classify, {"text": evidence, "text_pair": claim}, truncation=True)
        scores = scores[0] if scores and isinstance(scores[0], list) else scores
        for s in scores:
            if "entail" in s["label"].lower():
                return float(s["score"])
        raise ModelError(f"The NLI judge {kind!r} has no 'entailment' label ({[s['label'] for s in scores]}).")

    return Judges(nli, None, kind)


# --- answering -------------------------------------------------------------------------------
def citewise_answer(pipeline: Any, question: str, filters: Filters | None = None) -> dict[str, Any]:
    """citewise's answer in the evaluation's shape (sources numbered as cited)."""
    t0 = time.perf_counter()
    a = pipeline.ask(question, filters=filters)
    return {"answer": a.text, "raw_answer": a.raw_text, "refused": a.refused, "outcome": a.outcome,
            "confidence": a.confidence, "signals": a.signals,
            "refusal_reason": a.refusal_reason, "seconds": time.perf_counter() - t0,
            "sources": [{"title": s.title, "abstract": s.abstract} for s in a.sources]}


def predict(q: Question, run: dict[str, Any], judges: Judges | None) -> dict[str, Any]:
    """One ``predictions.jsonl`` record: the answer, its citations and per-sentence verdicts.

    ``[n]`` cites ``run["sources"][n - 1]``; a number with no source becomes the title
    ``"[n] (no such source)"``, which counts as a fabricated citation."""
    sources, cited, sentences = run["sources"], [], []
    titles = [s["title"] for s in sources]
    for text, nums in ([] if run["refused"] else parse_citations(run["answer"])):
        cited += [titles[n - 1] if 1 <= n <= len(sources) else f"[{n}] (no such source)" for n in nums]
        used = {titles[n - 1]: sources[n - 1]["abstract"] for n in nums if 1 <= n <= len(sources)}
        evidence = "\n\n".join(f"{t}. {abstract}" for t, abstract in used.items())
        support = judges.support if judges else None
        sentences.append({"text": text, "citations": nums, **M.judge_sentence(text, evidence, support)})
    record = {"id": q.id, "split": q.split, "type": q.type, "question": q.question, "answer": run["answer"],
              "refused": run["refused"], "cited_titles": list(dict.fromkeys(cited)),
              "retrieved_titles": list(dict.fromkeys(titles)), "seconds": round(run["seconds"], 3),
              "sentences": sentences, "gold_titles": q.gold_titles, "keywords": q.keywords}
    record.update({k: run[k] for k in ("outcome", "raw_answer", "refusal_reason", "confidence", "signals",
                                       "error") if run.get(k) is not None and run.get(k) != ""})
    if judges and judges.answers and q.answerable and not run["refused"] and run["answer"].strip():
        p = min(max(float(judges.answers(q.question, citations_removed(run["answer"]))), 0.0), 1.0)
        record.update(answers_p=round(p, 4), answers_question=p >= M.THRESHOLD)
    return record


def answer_all(pipeline: Any, questions: list[Question], system: str, judge: Judges | None,
               progress: bool = True) -> list[dict[str, Any]]:
    """Every question through ``system``, with a progress bar."""
    from tqdm import tqdm

    if system == "baseline":
        from .baseline import baseline_system

        if any(q.withhold for q in questions):
            raise ConfigError("Questions with withheld papers run on citewise only (the baseline "
                              "has no filters); drop --withheld or use --system citewise.")
        ask = baseline_system(pipeline)
    else:
        ask = partial(citewise_answer, pipeline)
    items, papers = [], pipeline.index.papers() if any(q.withhold for q in questions) else []
    for q in tqdm(questions, desc=system, unit="question", disable=not progress):
        try:
            run = ask(q.question, without(papers, q.withhold)) if q.withhold else ask(q.question)
        except QuestionError as exc:
            run = {"answer": "", "refused": True, "seconds": 0.0, "sources": [], "error": str(exc)}
        items.append(predict(q, run, judge))
    return items


def without(papers: list[Paper], titles: Sequence[str]) -> Filters:
    """Filters letting every one of ``papers`` through except those titled ``titles``."""
    gone = {normalize_title(t) for t in titles}
    return Filters(paper_ids=tuple(p.paper_id for p in papers if normalize_title(p.title) not in gone))


# --- files -----------------------------------------------------------------------------------
def write_run(out_dir: Path, items: list[dict], info: dict[str, Any], k: int) -> dict[str, Any]:
    """Write predictions.jsonl, metrics.json, the plots and report.md of one run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "predictions.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(i, ensure_ascii=False) + "\n" for i in items)
    data = {**M.summarize(items, k), "per_type": M.per_type(items, k),
            "per_split": M.per_split(items, k), "run": info}
    (out_dir / "metrics.json").write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    write_report(out_dir, [(info["system"], data, items)])
    return data


def load_run(run_dir: str | Path) -> tuple[str, dict[str, Any], list[dict]]:
    """(system name, metrics.json, predictions) of a finished run folder."""
    run_dir = Path(run_dir)
    try:
        data = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        lines = (run_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{run_dir} is not a finished evaluation run ({exc}); run `python -m rag eval` first.") from None
    return data.get("run", {}).get("system", run_dir.name), data, [json.loads(x) for x in lines if x.strip()]


def plot(out_dir: Path, runs: list[tuple[str, dict, list[dict]]]) -> None:
    """per_type.png (grouped bars per question type) and latency.png (histogram)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = list(dict.fromkeys(t for _, data, _ in runs for t in data["per_type"]))
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4 * len(PLOTTED), 3.6), sharey=True)
    width = 0.8 / len(runs)
    for ax, key in zip(axes, PLOTTED):
        for r, (name, data, _) in enumerate(runs):
            vals = [data["per_type"].get(t, {}).get(key) or 0.0 for t in types]
            ax.bar([x + r * width for x in range(len(types))], vals, width, label=name)
        ax.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(types))], types, rotation=20)
        ax.set(title=M.DEFINITIONS[key][0], ylim=(0, 1.05))
    axes[0].legend(fontsize=8)
    figures = [(fig, "per_type.png"), (plt.figure(figsize=(6, 3.6)), "latency.png")]
    ax = figures[1][0].gca()
    top = max((i["seconds"] for _, _, items in runs for i in items), default=0.0) or 1.0
    for name, _, items in runs:
        ax.hist([i["seconds"] for i in items], bins=20, range=(0, top), alpha=0.6, label=name)
    ax.set(xlabel="seconds per question", ylabel="questions")
    ax.legend()
    for figure, name in figures:
        figure.tight_layout()
        figure.savefig(out_dir / name, dpi=110)
        plt.close(figure)


def _delta(key: str, a: Any, b: Any) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return "n/a"
    return f"{a - b:+.2f} s" if key.startswith("latency") else f"{a - b:+.3f}"


def _example(item: dict, others: list[tuple[str, dict]]) -> list[str]:
    status = "refused" if item["refused"] else "answered"
    lines = [f"### {item['id']} ({item['type']}, {status}, {item['seconds']:.1f} s)", "",
             f"**Question:** {item['question']}", "", f"**Answer:** {item['answer'] or '(empty)'}", ""]
    lines += [f"Cited: {'; '.join(item['cited_titles']) or 'nothing'}", "",
              f"Gold: {'; '.join(item['gold_titles']) or 'none (not in the corpus)'}", ""]
    for s in item["sentences"]:
        p = "-" if s["p"] is None else f"{s['p']:.2f}"
        why = f" ({'; '.join(s['hard_failures'])})" if s["hard_failures"] else ""
        lines.append(f"- {'supported' if s['supported'] else 'UNSUPPORTED'}, judge {p}{why}: {s['text']}")
    for name, other in others:
        lines += ["", f"**{name}:** {'(refused) ' if other['refused'] else ''}{other['answer'] or '(empty)'}"]
    return lines + [""]


def pick_examples(items: list[dict], n_answered: int = 3, n_refused: int = 2) -> list[dict]:
    """A few answers of different types, then refusals (unanswerable ones first)."""
    answered, types = [], set()
    for i in items:
        if not i["refused"] and i["type"] not in types and len(answered) < n_answered:
            answered.append(i)
            types.add(i["type"])
    refused = sorted((i for i in items if i["refused"]), key=lambda i: i["type"] != M.UNANSWERABLE)
    return answered + refused[:n_refused]


def write_report(out_dir: Path, runs: list[tuple[str, dict, list[dict]]]) -> None:
    """report.md (and its plots): one run, or two side by side with their differences."""
    plot(out_dir, runs)
    names, info = [name for name, _, _ in runs], runs[0][1]["run"]
    retrieval = ", ".join(f"{d['run'].get('retrieval_mode')} ({n})" for n, d, _ in runs)
    lines = [f"# Evaluation: {' vs '.join(names)}", "",
             f"{runs[0][1]['n_items']} questions from `{info.get('questions')}`; model {info.get('model')} "
             f"on {info.get('device')}; judge: {info.get('judge')}; top_k={info.get('top_k')}; "
             f"retrieval: {retrieval}; {info.get('created')}.", "", "## Metrics", ""]
    head = "| Metric | " + " | ".join(names) + (f" | Δ ({names[0]} − {names[1]})" if len(runs) == 2 else "")
    lines += [head + " | Definition |", "|" + "---|" * (len(runs) + 2 + (len(runs) == 2))]
    for key, (label, definition) in M.DEFINITIONS.items():
        vals = [data.get(key) for _, data, _ in runs]
        cells = [M.format_value(key, v) for v in vals] + ([_delta(key, *vals)] if len(runs) == 2 else [])
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {definition} |")
    counts = ", ".join(f"{k}={runs[0][1].get(k)}" for k in M.COUNTS)
    lines += ["", f"Counts ({names[0]}): {counts}.", ""] + _split_table(runs) + ["## By question type", ""]
    for name, data, _ in runs:
        lines += [f"**{name}**", "", "| Type | n | " + " | ".join(M.DEFINITIONS[k][0] for k in TYPE_COLUMNS) + " |",
                  "|" + "---|" * (len(TYPE_COLUMNS) + 2)]
        lines += [f"| {t} | {m['n_items']} | " + " | ".join(M.format_value(k, m.get(k)) for k in TYPE_COLUMNS)
                  + " |" for t, m in data["per_type"].items()] + [""]
    lines += ["![Scores by question type](per_type.png)", "", "![Latency](latency.png)", "",
              "## Example answers", ""]
    by_id = [{i["id"]: i for i in items} for _, _, items in runs[1:]]
    for item in pick_examples(runs[0][2]):
        others = [(name, ids[item["id"]]) for (name, _, _), ids in zip(runs[1:], by_id) if item["id"] in ids]
        lines += _example(item, others)
    (out_dir / "report.md").write_text("\n".join(lines), encoding="utf-8")


def _split_table(runs: list[tuple[str, dict, list[dict]]]) -> list[str]:
    """Every metric per split (dev: tuned on; test: frozen), each run's splits side by side."""
    cols = [(name, split, m) for name, data, _ in runs for split, m in data.get("per_split", {}).items()]
    if len({split for _, split, _ in cols}) < 2:
        return []
    lines = ["## Dev and test splits", "",
             "`dev` is what the pipeline was tuned on; `test` was frozen before tuning and only reported.",
             "", "| Metric | " + " | ".join(f"{n} {sp} (n={m['n_items']})" for n, sp, m in cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for key, (label, _) in M.DEFINITIONS.items():
        lines.append(f"| {label} | " + " | ".join(M.format_value(key, m.get(key)) for _, _, m in cols) + " |")
    return lines + [""]


def compare_runs(dir_a: str | Path, dir_b: str | Path) -> str:
    """A Markdown table of every metric of two finished runs and their difference (A − B)."""
    (name_a, a, _), (name_b, b, _) = load_run(dir_a), load_run(dir_b)
    lines = [f"| Metric | A: {name_a} | B: {name_b} | A − B |", "|---|---|---|---|"]
    for key, (label, _) in M.DEFINITIONS.items():
        lines.append(f"| {label} | {M.format_value(key, a.get(key))} | {M.format_value(key, b.get(key))} "
                     f"| {_delta(key, a.get(key), b.get(key))} |")
    return "\n".join(lines)


# --- entry points ------------------------------------------------------------------------------
def run_eval(settings: Settings, questions_path: str | Path, out_dir: str | Path, limit: int | None = None,
             system: str = "citewise", judge: str = "generator", progress: bool = True,
             baseline_dir: str | Path | None = None, pipeline: Any = None, split: str | None = None,
             judge_model: str | None = None, withheld_gold: bool = False) -> dict[str, Any]:
    """Evaluate ``system`` (citewise, baseline or both) on ``split`` (``dev``, ``test`` or, by
    default, both, each reported on its own) and write the run folder(s). With
    ``withheld_gold``, the questions are the answerable ones with their gold papers withheld
    (``rag.evaluation.questions.withheld``): every one should be refused.

    Returns the metrics of the run; for ``both``, ``{"citewise": ..., "baseline": ...}`` with
    the runs in ``out_dir/citewise`` and ``out_dir/baseline`` and a combined ``report.md``.
    """
    if system not in (*SYSTEMS, "both"):
        raise ConfigError(f"Unknown system {system!r}; use citewise, baseline or both.")
    from ..pipeline import Pipeline

    questions = load_questions(questions_path, split)
    questions = (withheld(questions) if withheld_gold else questions)[: limit or None]
    pipeline = pipeline or Pipeline(settings)
    settings, out_dir = pipeline.settings, Path(out_dir)
    judge_fn = make_judge(judge, pipeline, judge_model)
    pipeline.warm_up()  # one pipeline, loaded once before the clock runs, serves every system
    judge_fn.support("warm up", "warm up")  # the judge's model too
    results, runs = {}, []
    for name in SYSTEMS if system == "both" else (system,):
        items = answer_all(pipeline, questions, name, judge_fn, progress)
        gen = pipeline.generator
        info = {"system": name, "model": gen.name, "device": gen.device, "judge": judge_fn.name,
                "split": split or "dev+test", "gold_withheld": withheld_gold,
                "questions": portable_path(Path(questions_path)), "top_k": settings.top_k,
                "retrieval_mode": settings.retrieval_mode if name == "citewise" else "dense (llama-index)",
                "max_new_tokens": settings.max_new_tokens, "min_support": settings.min_support,
                "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        run_dir = out_dir / name if system == "both" else out_dir
        results[name] = write_run(run_dir, items, info, settings.top_k)
        runs.append((name, results[name], items))
    if system == "both" or baseline_dir:
        write_report(out_dir, runs + ([load_run(baseline_dir)] if baseline_dir else []))
    return results if system == "both" else results[system]


def retrieval_eval(settings: Settings, questions_path: str | Path, k: int | None = None, pipeline: Any = None,
                   modes: tuple[str, ...] = ("dense", "bm25", "hybrid")) -> dict[str, Any]:
    """Recall@k and MRR@k of the gold papers, per retrieval mode, over the answerable questions
    (``k``: the settings' ``top_k`` by default, as the answers use)."""
    from ..pipeline import Pipeline

    pipeline = pipeline or Pipeline(settings)
    k = k or settings.top_k
    questions = [q for q in load_questions(questions_path) if q.answerable and q.gold_titles]
    out: dict[str, Any] = {"k": k, "n": len(questions), "modes": {}}
    for mode in modes:
        recalls, rrs, misses = [], [], []
        for q in questions:
            titles = [s.title for s in pipeline.search(q.question, k=k, mode=mode)]
            recalls.append(M.recall_at_k(titles, q.gold_titles, k))
            rrs.append(M.reciprocal_rank(titles, q.gold_titles))
            misses += [q.id] if recalls[-1] < 1.0 else []
        out["modes"][mode] = {"recall_at_k": round(M.mean(recalls) or 0.0, 4),
                              "mrr": round(M.mean(rrs) or 0.0, 4), "missed": misses}
    return out


def format_retrieval(result: dict[str, Any]) -> str:
    """The retrieval evaluation as a Markdown table."""
    k = result["k"]
    lines = [f"Retrieval over {result['n']} answerable questions (k={k})", "",
             f"| Mode | Recall@{k} | MRR@{k} | Questions missing a gold paper |", "|---|---|---|---|"]
    for mode, m in result["modes"].items():
        lines.append(f"| {mode} | {m['recall_at_k']:.3f} | {m['mrr']:.3f} | {', '.join(m['missed']) or '-'} |")
    return "\n".join(lines)
