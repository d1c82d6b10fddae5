"""Command line: ``citewise ingest|search|papers|sources|ask|app ...`` (or ``python -m rag ...``).

Every command turns a ``RagError`` into one clear line on stderr and exit code 1; heavy
libraries load only inside the command that needs them, so ``--help`` is instant.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer

from .errors import RagError
from .prompts import WITHHELD

if TYPE_CHECKING:  # pragma: no cover
    from .config import Settings
    from .types import Answer

T = TypeVar("T")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Ask questions of research-paper abstracts; every claim cited, or an honest "
    "'the papers don't say'.",
)

IndexDir = Annotated[
    Optional[Path],
    typer.Option("--index-dir", help="Index folder (default: ./index in a checkout, else citewise/index in "
                 "the user data folder)."),
]
K = Annotated[Optional[int], typer.Option("-k", "--top-k", help="Papers to retrieve.")]
def _quiet_json(as_json: bool) -> bool:
    """``--json``: stdout is one JSON document, stderr carries no progress bars."""
    from .console import set_quiet

    set_quiet(bool(as_json))
    return as_json


AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.", callback=_quiet_json)]
Mode = Annotated[
    Optional[str], typer.Option("--mode", help="Retrieval: hybrid, dense or bm25.")
]


def settings_from(**overrides: Any) -> Settings:
    """Settings from the environment plus command-line overrides (bad values: RagError)."""
    from pydantic import ValidationError

    from .config import Settings
    from .errors import ConfigError

    try:
        return Settings().with_overrides(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        if first.get("type") == "extra_forbidden":
            from .config import config_files

            files = ", ".join(str(f) for f in config_files()) or "the settings"
            raise ConfigError(f"Unknown setting {where!r} in {files}; the settings and their names are "
                              "in rag/config.py and the README's Settings section.") from None
        raise ConfigError(f"Invalid setting {where}: {first.get('msg')}.") from None


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def guarded(fn: Callable[..., T]) -> Callable[..., T]:
    """Run a command body, printing user errors as one line (no traceback): the project's
    own errors, which include a damaged index's (the store translates Chroma's failures)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except RagError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted; the index keeps everything committed so far (re-run to finish)")

    return wrapper


@app.command()
@guarded
def ingest(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="Files or folders to add (.txt listing pages, .jsonl, .csv).")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Delete the index and build it again.")] = False,
    remove: Annotated[Optional[list[Path]], typer.Option("--remove", help="Drop a source (or a streamed dump) from the corpus.")] = None,
    stream: Annotated[Optional[list[Path]], typer.Option("--stream", help="Stream a large .jsonl/.csv dump in batches (constant memory, resumable); register it.")] = None,
    index_dir: IndexDir = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: AsJson = False,
) -> None:
    """Build or update the index (only new or changed chunks are embedded)."""
    from .errors import ConfigError
    from .ingest import combined
    from .ingest import ingest as run_ingest

    settings = settings_from(index_dir=index_dir)
    if stream:
        if paths or remove or rebuild:
            raise ConfigError("--stream cannot be combined with PATH, --remove or --rebuild; "
                              "run them as separate commands.")
        from .bulk import ingest_dump

        reports = [ingest_dump(settings, dump, progress=not (quiet or as_json)) for dump in stream]
        report = reports[0]
        for more in reports[1:]:
            report = combined(report, more)
    else:
        report = run_ingest(settings, paths or [], rebuild=rebuild, remove=remove or [],
                            progress=not (quiet or as_json))
    where = settings.chroma_url or str(settings.index_dir)
    if as_json:
        typer.echo(json.dumps({**asdict(report), "index": where}, ensure_ascii=False, indent=2))
        return
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"Indexed {report.summary()} -> {where}")


@app.command()
@guarded
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: K = None,
    mode: Mode = None,
    author: Annotated[Optional[list[str]], typer.Option("--author", help="Only papers by this author (repeat: any of them).")] = None,
    category: Annotated[Optional[list[str]], typer.Option("--category", help="Only papers in this category, e.g. cs.LG (repeat: any of them).")] = None,
    year: Annotated[Optional[str], typer.Option("--year", help="Only papers dated in this year (YYYY).")] = None,
    as_json: AsJson = False,
    index_dir: IndexDir = None,
) -> None:
    """Show the papers that best match a query."""
    from .pipeline import Pipeline
    from .types import Filters

    settings = settings_from(index_dir=index_dir, top_k=k, retrieval_mode=mode)
    filters = Filters(authors=tuple(author or ()), categories=tuple(category or ()),
                      date_from=year, date_to=year)
    sources = Pipeline(settings).search(query, filters=filters)
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in sources], ensure_ascii=False, indent=2))
        return
    if not sources:
        typer.echo("No paper matches.")
    for s in sources:
        typer.echo(f"[{s.number}] {s.title}  (score {s.score:.2f})")
        typer.echo(f"    {_clip(s.text, 200)}")


@app.command()
@guarded
def papers(as_json: AsJson = False, index_dir: IndexDir = None) -> None:
    """List the indexed papers."""
    from .store import PaperIndex

    settings = settings_from(index_dir=index_dir)
    listed = PaperIndex(settings).papers()
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in listed], ensure_ascii=False, indent=2))
        return
    for p in listed:
        extra = ", ".join(x for x in (p.published, f"{p.n_authors} authors" if p.n_authors else None) if x)
        typer.echo(f"{p.paper_id}  {p.title}" + (f"  ({extra})" if extra else ""))
    typer.echo(f"{len(listed)} papers", err=True)


@app.command()
@guarded
def sources(as_json: AsJson = False, index_dir: IndexDir = None) -> None:
    """List the files and folders the index is built from (streamed dumps marked)."""
    from .store import PaperIndex

    index = PaperIndex(settings_from(index_dir=index_dir))
    if as_json:
        streamed = [{"source": src, "finished": bool(state)} for src, state in index.streamed_dumps().items()]
        typer.echo(json.dumps({"sources": list(index.corpus_files()), "streamed": streamed},
                              ensure_ascii=False, indent=2))
        return
    for src in index.corpus_files():
        typer.echo(src)
    for src, state in index.streamed_dumps().items():
        typer.echo(f"{src}  (streamed{'' if state else ', unfinished: re-run ingest'})")


@app.command()
@guarded
def ask(
    question: Annotated[str, typer.Argument(help="Your question, in plain language.")],
    k: K = None,
    mode: Mode = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Generator model (bundled name, HF id, folder or .gguf).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or mps.")] = None,
    keep: Annotated[bool, typer.Option("--continue", "-c", help="A follow-up: continue the last conversation (kept in the cache folder) instead of starting a new one.")] = False,
    fmt: Annotated[Optional[str], typer.Option("--format", help="text (streamed, the default), json, markdown (the answer and its linked references) or bibtex (the cited papers).")] = None,
    as_json: AsJson = False,
    index_dir: IndexDir = None,
) -> None:
    """Answer a question from the indexed abstracts, citing every claim."""
    from .errors import ConfigError
    from .export import FORMATS, to_bibtex, to_markdown
    from .pipeline import Pipeline
    from .types import Answer, Token

    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
    if as_json and fmt not in (None, "json"):
        raise ConfigError(f"--json and --format {fmt} disagree; give one of them")
    fmt = "json" if as_json else fmt or "text"
    settings = settings_from(index_dir=index_dir, top_k=k, retrieval_mode=mode, model=model, device=device)
    history = load_conversation(settings) if keep else []
    pipeline = Pipeline(settings)
    if fmt != "text":
        answer = pipeline.ask(question, history=history)
        save_conversation(settings, [*history, (answer.question, answer.text)])
        shown = {"json": lambda a: json.dumps(a.to_dict(), ensure_ascii=False, indent=2),
                 "markdown": to_markdown, "bibtex": to_bibtex}[fmt](answer)
        typer.echo(shown.rstrip("\n"))
        return
    final: Answer | None = None
    streamed = False
    for event in pipeline.stream(question, history=history):
        if isinstance(event, Token):
            if not streamed:
                typer.secho("draft: ", fg="bright_black", nl=False, err=True)
                streamed = True
            typer.secho(event.text, fg="bright_black", nl=False, err=True)
        elif isinstance(event, Answer):
            final = event
    if streamed:
        typer.echo("", err=True)
    assert final is not None
    save_conversation(settings, [*history, (final.question, final.text)])
    typer.echo(format_answer(final))


#: Turns of a CLI conversation kept for ``ask --continue`` (older ones are dropped).
CONVERSATION_TURNS = 10


def conversation_file(settings: Settings) -> Path:
    """Where ``ask`` keeps the conversation that ``ask --continue`` continues."""
    return Path(settings.model_cache_dir).expanduser() / "conversation.json"


def _index_location(settings: Settings) -> str:
    return settings.chroma_url or str(Path(settings.index_dir).expanduser().resolve())


def load_conversation(settings: Settings) -> list[tuple[str, str]]:
    """The saved conversation's ``(question, answer)`` turns, for ``ask --continue``."""
    from .errors import ConfigError

    path = conversation_file(settings)
    start_new = "ask without --continue to start one"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        turns = [(str(q), str(a)) for q, a in data["turns"]]
        index = data["index"]
    except FileNotFoundError:
        raise ConfigError(f"There is no conversation to continue yet; {start_new}.") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"The saved conversation {path} cannot be read ({type(exc).__name__}); "
                          f"{start_new}.") from None
    if index != _index_location(settings):
        raise ConfigError(f"The last conversation was over another index ({index}); {start_new} here.")
    return turns


def save_conversation(settings: Settings, turns: list[tuple[str, str]]) -> None:
    """Keep the last ``CONVERSATION_TURNS`` turns (``atomic_json``: an interrupted write leaves
    the previous conversation whole)."""
    from .generation.models import atomic_json

    path = conversation_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_json(path, {"index": _index_location(settings), "turns": [list(t) for t in turns[-CONVERSATION_TURNS:]]})


@app.command("eval")
@guarded
def eval_(
    questions: Annotated[Optional[Path], typer.Option("--questions", help="Question set, JSON lines (default: eval/questions.jsonl).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run folder (default: eval/reports/latest for a full run, eval/reports/scratch with --limit or --questions).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N questions.")] = None,
    system: Annotated[str, typer.Option("--system", help="citewise, baseline (stock llama-index CitationQueryEngine) or both.")] = "citewise",
    judge: Annotated[str, typer.Option("--judge", help="Sentence support judge: generator (a local model), none (lexical), or an NLI model id/folder.")] = "generator",
    judge_model: Annotated[str, typer.Option("--judge-model", help="Model of the generator judge: auto (the bundled 1.5B when installed, else --model) or a model spec.")] = "auto",
    split: Annotated[Optional[str], typer.Option("--split", help="dev (tune on it), test (frozen; report only) or, by default, both.")] = None,
    withheld: Annotated[bool, typer.Option("--withheld", help="Ask the answerable questions with their gold papers withheld from retrieval (all should be refused); report in eval/reports/withheld.")] = False,
    k: K = None,
    mode: Mode = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Generator model (bundled name, HF id, folder or .gguf).")] = None,
    baseline_dir: Annotated[Optional[Path], typer.Option("--baseline-dir", help="A finished baseline run to show side by side.")] = None,
    compare: Annotated[Optional[tuple[Path, Path]], typer.Option("--compare", help="Print the metric deltas of two finished run folders A B, then exit.")] = None,
    index_dir: IndexDir = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: AsJson = False,
) -> None:
    """Evaluate answers on the question set: retrieval, citations, faithfulness, refusals."""
    from .config import QUESTIONS, WORK_DIR
    from .errors import ConfigError
    from .evaluation.metrics import DEFINITIONS, format_value
    from .evaluation.run import compare_runs, run_eval

    if compare:
        if as_json:
            raise ConfigError("--compare prints a table; the metrics of each run are in its metrics.json")
        typer.echo(compare_runs(*compare))
        return
    settings = settings_from(index_dir=index_dir, top_k=k, retrieval_mode=mode, model=model)
    out = out or default_run_dir(WORK_DIR, limit=limit, questions=questions, withheld=withheld)
    result = run_eval(settings, questions or QUESTIONS, out, limit=limit,
                      system=system, judge=judge, progress=not (quiet or as_json), baseline_dir=baseline_dir,
                      split=split, judge_model=judge_model, withheld_gold=withheld)
    if as_json:
        typer.echo(json.dumps({"metrics": result, "report": str(out / "report.md")}, ensure_ascii=False,
                              indent=2, default=str))
        return
    if system == "both":
        typer.echo(compare_runs(out / "citewise", out / "baseline"))
    else:
        for key, (label, _) in DEFINITIONS.items():
            typer.echo(f"{label:<28} {format_value(key, result.get(key))}")
    typer.echo(f"\nReport: {out / 'report.md'}")


def default_run_dir(root: Path, limit: int | None = None, questions: Path | None = None,
                    withheld: bool = False) -> Path:
    """Where ``eval`` writes without ``--out``: the committed ``eval/reports/latest`` (or
    ``eval/reports/withheld`` for ``--withheld``) only for a full run on the bundled questions;
    a quick try (``--limit``, other questions) goes to the ignored ``eval/reports/scratch``, so
    it never overwrites the report of record.

    >>> default_run_dir(Path("r")).as_posix(), default_run_dir(Path("r"), limit=5).as_posix()
    ('r/eval/reports/latest', 'r/eval/reports/scratch')
    """
    partial = limit is not None or questions is not None
    return root / "eval" / "reports" / ("scratch" if partial else "withheld" if withheld else "latest")


@app.command("eval-judge")
@guarded
def eval_judge(
    pairs: Annotated[Optional[Path], typer.Option("--pairs", help="Hand-labelled pairs, JSON lines (default: eval/judge_pairs.jsonl).")] = None,
    judge: Annotated[str, typer.Option("--judge", help="generator (a local model), none (lexical), or an NLI model id/folder.")] = "generator",
    judge_model: Annotated[str, typer.Option("--judge-model", help="auto (the bundled 1.5B when installed, else the default model) or a model spec.")] = "auto",
    out: Annotated[Optional[Path], typer.Option("--out", help="Report folder (default: eval/reports/judge).")] = None,
    as_json: AsJson = False,
) -> None:
    """Measure the evaluation's judge against hand-labelled (question, claim, evidence) pairs."""
    from .config import JUDGE_PAIRS, REPORTS_DIR
    from .evaluation.judge import check_judge, format_report, load_pairs
    from .evaluation.run import make_judge
    from .pipeline import Pipeline
    from .store import portable_path

    pairs = pairs or JUDGE_PAIRS
    out = out or REPORTS_DIR / "judge"
    result = check_judge(load_pairs(pairs), make_judge(judge, Pipeline(settings_from()), judge_model),
                         progress=not as_json)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    report = format_report(result, str(portable_path(pairs)))
    (out / "report.md").write_text(report, encoding="utf-8")
    summary = {k: v for k, v in result.items() if k != "rows"}
    typer.echo(json.dumps(summary, indent=2) if as_json else report)


@app.command("calibrate")
@guarded
def calibrate_(
    model: Annotated[Optional[str], typer.Option("--model", help="Generator model to calibrate (default: the configured one).")] = None,
    questions: Annotated[Optional[Path], typer.Option("--questions", help="Question set; only its dev split is read (default: eval/questions.jsonl).")] = None,
    max_false_refusals: Annotated[float, typer.Option("--max-false-refusals", min=0.0, max=1.0, help="Cross-validated share of answerable dev questions the answer threshold may leave unanswered.")] = 0.16,
    refit_rows: Annotated[Optional[Path], typer.Option("--refit", help="Refit from rows an earlier run wrote (no model needed).")] = None,
    index_dir: IndexDir = None,
    as_json: AsJson = False,
) -> None:
    """Fit the answer-or-refuse classifier for a model on the dev split (cross-validated)."""
    from .evaluation.calibrate import calibrate, refit
    from .config import QUESTIONS, REPORTS_DIR

    settings = settings_from(index_dir=index_dir, model=model)
    if refit_rows:
        rows = [json.loads(line) for line in refit_rows.read_text(encoding="utf-8").splitlines() if line.strip()]
        result = refit(rows, settings.model, max_false_refusals)
    else:
        result = calibrate(settings, questions or QUESTIONS, REPORTS_DIR / "calibration", max_false_refusals,
                           progress=not as_json)
    typer.echo(json.dumps(result, indent=2) if as_json else
               "\n".join(f"{k}: {v}" for k, v in result.items()))


@app.command("eval-retrieval")
@guarded
def eval_retrieval(
    questions: Annotated[Optional[Path], typer.Option("--questions", help="Question set, JSON lines (default: eval/questions.jsonl).")] = None,
    k: Annotated[Optional[int], typer.Option("-k", "--top-k", min=1, help="Papers retrieved per question (default: the settings' top_k, 5).")] = None,
    as_json: AsJson = False,
    index_dir: IndexDir = None,
) -> None:
    """Score retrieval alone (no model): recall@k and MRR for dense, BM25 and hybrid."""
    from .config import QUESTIONS
    from .evaluation.run import format_retrieval, retrieval_eval

    settings = settings_from(index_dir=index_dir)
    result = retrieval_eval(settings, questions or QUESTIONS, k=k)
    typer.echo(json.dumps(result, indent=2) if as_json else format_retrieval(result))


@app.command()
@guarded
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Small and fast (for CI): every section, tiny sizes.")] = False,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Run only these sections (ingest, embed, search, scale, generate, answer, cold, app; opt-in: assisted, dump, filters).")] = None,
    scale: Annotated[Optional[list[int]], typer.Option("--scale", help="Synthetic index sizes in chunks (default 100000; 1000000 is opt-in).")] = None,
    papers: Annotated[Optional[list[int]], typer.Option("--papers", min=1, help="Synthetic dump sizes in papers for dump and filters (default 10000 and 50000).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the JSON results.")] = Path("bench-results.json"),
    index_dir: IndexDir = None,
) -> None:
    """Measure ingest, search, generation, answers, a cold `ask` and app start, each against
    its baseline; figures with a target are marked as meeting or missing it."""
    from .evaluation import bench as benchmarks

    settings = settings_from(index_dir=index_dir)
    results = benchmarks.run(settings, quick=quick, only=only, scale=scale, out=out,
                             echo=lambda m: typer.echo(m, err=True), papers=papers)
    typer.echo(benchmarks.table(results))
    typer.echo(json.dumps(results))


@app.command("app", add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def app_command(ctx: typer.Context) -> None:
    """Serve the web app: the chat, the papers and the REST API on one port (options:
    citewise app --help)."""
    from .webapp import main as serve_app

    raise typer.Exit(code=serve_app(ctx.args))


@app.command("serve-model")
@guarded
def serve_model(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8080,
    model: Annotated[Optional[str], typer.Option("--model", help="Generator model (bundled name, HF id, folder or .gguf).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or mps.")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve a non-loopback --host without RAG_OPENAI_API_KEY (anyone who reaches it can use it).")] = False,
) -> None:
    """Serve the local model over an OpenAI-compatible API that several app instances share
    (point them at it with RAG_OPENAI_URL=http://HOST:PORT/v1). A --host other than loopback
    needs RAG_OPENAI_API_KEY, or --no-auth."""
    from .generation.server import serve

    serve(settings_from(model=model, device=device), host=host, port=port,
          echo=lambda m: typer.echo(m, err=True), no_auth=no_auth)


@app.command("mcp")
@guarded
def mcp_(
    model: Annotated[Optional[str], typer.Option("--model", help="Generator model (bundled name, HF id, folder or .gguf).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or mps.")] = None,
    index_dir: IndexDir = None,
) -> None:
    """Serve the index to an MCP client over stdio: tools search_papers and ask, the papers as
    citewise://papers resources (stdout carries only the protocol; logs go to stderr)."""
    from .mcp_server import serve

    serve(settings_from(index_dir=index_dir, model=model, device=device))


def format_answer(answer: Answer) -> str:
    """The verified answer and its references, as plain text."""
    lines = [answer.text, ""]
    if answer.outcome == "not_found" and answer.sources:
        lines.append("Closest papers found:")
        lines += [f"  [{s.number}] {s.title}" for s in answer.sources]
    links = {s.number: (s.metadata or {}).get("url") for s in answer.sources}
    for c in answer.citations:
        lines.append(f"[{c.number}] {c.title}" + (f"  <{links[c.number]}>" if links.get(c.number) else ""))
        if c.supporting_sentence and answer.outcome == "answered":  # a related answer quotes them
            lines.append(f"    \u201c{_clip(c.supporting_sentence, 240)}\u201d")
    lines += [f"Withheld: {s.title} ({WITHHELD})" for s in answer.withheld]
    t = answer.timings
    if t:
        lines.append("")
        used = f", {answer.model} on {answer.device}" if answer.model else ""
        lines.append(f"({t.get('total', 0):.1f} s{used})")
    return "\n".join(lines).strip()


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def main() -> None:
    try:
        app()
    except RagError as exc:  # pragma: no cover - guarded covers commands
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
