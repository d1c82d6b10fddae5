"""The web app: streamed, citation-checked answers beside the papers they come from.

``build_app(pipeline)`` returns a queued ``gr.Blocks`` and launches nothing (``app.py``
does). The chat is a ``gr.ChatInterface`` (stop, retry, edit, conversations saved in the
browser) around a plain generator, ``ChatUI.stream_chat``, tested with a fake pipeline. Every
paper text and answer is HTML-escaped before it goes into markup, so an abstract holding
``<script>`` shows as text, and supporting sentences are highlighted:

>>> highlight("A <b>bold</b> claim. Another one.", ["Another one."])
'A &lt;b&gt;bold&lt;/b&gt; claim. <mark>Another one.</mark>'

A citation ``[n]`` in an answer links to source card ``n`` (``id="source-n"``); a click
scrolls to the card and highlights it (``HEAD`` holds the few lines of script doing that):

>>> cite_link(2)
'[\\\\[2\\\\]](#source-2)'
"""

import hmac
import html
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from typing import TYPE_CHECKING, get_args
from urllib.parse import urlencode

from .config import RetrievalMode
from .conversation import clean_question
from .errors import QuestionError, RagError
from .export import to_markdown
from .generation.base import Generator
from .prompts import REFUSAL, WITHHELD
from .prompts import RELATED as RELATED_TEXT
from .types import NOT_FOUND, RELATED, Answer, Filters, Paper, Source, Status, Token
from .ui_copy import cleared, copy_button, markdown_box

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

    from .pipeline import Pipeline

log = logging.getLogger(__name__)

#: Questions the seed corpus answers (from eval/questions.jsonl), offered as examples.
EXAMPLES = [
    "What CIFAR-10 test error rate did the architecture designed by a recurrent controller "
    "trained with policy-gradient rewards achieve?",
    "Is there an image classification architecture that uses neither convolutions nor "
    "attention, and how does it mix information?",
    "Which simple training principle fits a network on convex combinations of pairs of "
    "examples and of their labels, and what benefits were reported?",
    "What identification accuracy did convolutional networks reach on the 3.2-million-image "
    "Snapshot Serengeti wildlife photo collection?",
]
MODES = list(get_args(RetrievalMode))
TABLE_HEADERS = ["Title", "Date", "Upvotes", "Authors", "Relevance"]
EMPTY_SOURCES = '<div class="cw-note">The papers behind each answer appear here.</div>'
PAPER_HINT = '<div class="cw-note">Click a row to read the paper\'s abstract here.</div>'
#: The note of the "related" outcome, in the chat and above the source cards.
RELATED_NOTE = "Found related papers, but could not verify an answer."
RELATED_EVIDENCE = "Closest evidence, quoted from the abstracts:"
RELEVANCE_HELP = ("relevance: the retrieval score that ranks the papers for this question "
                  "(meaning and keywords combined; higher is better)")
SIMILARITY_HELP = ("similarity: how close in meaning the paper's best-matching passage is to "
                   "the question (cosine similarity, 0 to 1)")
LEGEND = (f'<div class="cw-legend"><span title="{html.escape(RELEVANCE_HELP)}">'
          f'{html.escape(RELEVANCE_HELP)}</span> · <span title="{html.escape(SIMILARITY_HELP)}">'
          f"{html.escape(SIMILARITY_HELP)}</span></div>")
TICK = 1.0  # seconds between progress updates while nothing else happens
#: The page's styles. The panels the chat fills never show Gradio's status tracker: the
#: chat shows the progress, and a Stop racing the last update could flash "Error" on them.
CSS = """
.cw-card {border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px 12px;
  margin-bottom: 10px; background: var(--background-fill-primary); overflow-wrap: anywhere;
  scroll-margin: 80px;}
.cw-card.cw-cited {border-left: 4px solid var(--color-accent);}
.cw-card.cw-evidence {border-left: 4px solid #d97706;}
.cw-card.cw-focus {outline: 3px solid var(--color-accent); outline-offset: 2px;
  animation: cw-flash 1.6s ease-out;}
@keyframes cw-flash {from {background: #fde68a;} to {background: var(--background-fill-primary);}}
.cw-head {font-weight: 600; line-height: 1.35;} .cw-num {color: var(--color-accent); margin-right: 4px;}
.cw-head a.cw-title {color: inherit; text-decoration: underline; text-decoration-thickness: 1px;
  text-underline-offset: 2px;}
.cw-head a.cw-title:hover {color: var(--color-accent);}
.cw-badge {margin-left: 6px; font-size: .75em; padding: 1px 7px; border-radius: 9px;
  background: var(--color-accent); color: white; vertical-align: middle;}
.cw-evidence .cw-badge {background: #d97706;}
.cw-meta, .cw-note, .cw-legend {font-size: .85em; color: var(--body-text-color-subdued); margin: 3px 0 6px;}
.cw-legend {font-size: .75em; margin-bottom: 10px;}
.cw-meta [title] {cursor: help; text-decoration: underline dotted;}
.cw-card summary {cursor: pointer; font-size: .85em;}
.cw-card p {font-size: .9em; line-height: 1.5; margin: 6px 0 0;}
.cw-card mark {background: #fde68a; color: #1f2937; padding: 0 2px; border-radius: 3px;}
.cw-outcome {font-weight: 600; margin-bottom: 8px; padding: 8px 10px; border-radius: 8px;}
.cw-refusal {background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary);}
.cw-related {background: #fffbeb; color: #92400e; border: 1px solid #f59e0b;}
#cw-chat blockquote {border-left: 4px solid #f59e0b; background: #fffbeb; color: #78350f;
  margin: 6px 0; padding: 6px 10px; border-radius: 4px;}
#cw-chat .placeholder-content button, #cw-chat .example, #cw-chat .example * {
  white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
  height: auto !important; max-height: none !important; -webkit-line-clamp: unset !important;}
#cw-paper .cw-card p {font-size: .95em;}
#cw-sources [data-testid="status-tracker"], #cw-info [data-testid="status-tracker"],
#cw-markdown [data-testid="status-tracker"] {display: none !important;}
"""
#: Page script: a click on a citation link ``#source-n`` scrolls to that card and highlights it.
HEAD = """<script>
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest('a[href^="#source-"]');
  const card = link && document.getElementById(link.getAttribute("href").slice(1));
  if (!card) return;
  event.preventDefault();
  event.stopPropagation();
  document.querySelectorAll(".cw-card.cw-focus").forEach((c) => c.classList.remove("cw-focus"));
  void card.offsetWidth;
  card.classList.add("cw-focus");
  const details = card.querySelector("details");
  if (details) details.open = true;
  card.scrollIntoView({behavior: "smooth", block: "center"});
}, true);
</script>"""

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-!|~$])")
_CITE = re.compile(r"\\\[(\d+)\\\]")


def md_text(text: object) -> str:
    """Text made inert for the chat's Markdown: HTML escaped, Markdown syntax escaped."""
    return _MARKDOWN.sub(r"\\\1", html.escape(str(text), quote=False))


def cite_link(number: int | str) -> str:
    """The chat Markdown of citation ``[number]``: a link to its source card."""
    return f"[\\[{int(number)}\\]](#source-{int(number)})"


def _cited_md(text: str) -> str:
    """Escaped text with its ``[n]`` citation marks as links to the source cards."""
    return _CITE.sub(lambda m: cite_link(m.group(1)), md_text(text))


def _bold_cites(text: str) -> str:
    """Escaped text with its ``[n]`` marks in bold (a draft: no cards to link to yet)."""
    return _CITE.sub(r"**\\[\1\\]**", md_text(text))


def highlight(abstract: str, sentences: list[str]) -> str:
    """The abstract as escaped HTML, each of ``sentences`` found in it wrapped in ``<mark>``."""
    text = " ".join(abstract.split())
    spans = []
    for sentence in sentences:
        sentence = " ".join(sentence.split())
        start = text.find(sentence) if sentence else -1
        if start >= 0:
            spans.append((start, start + len(sentence)))
    out, pos = [], 0
    for start, end in sorted(spans):
        start = max(start, pos)
        if end > start:
            out += [html.escape(text[pos:start]), "<mark>", html.escape(text[start:end]), "</mark>"]
            pos = end
    return "".join(out) + html.escape(text[pos:])


def paper_url(title: str, metadata: dict | None = None) -> str:
    """Where to read a paper: its own ``url`` (http or https only) from the metadata, else an
    arXiv title search.

    >>> paper_url("Pointer Networks")
    'https://arxiv.org/search/?query=Pointer+Networks&searchtype=title'
    >>> paper_url("X", {"url": "javascript:alert(1)"}).startswith("https://arxiv.org/search/")
    True
    """
    url = str((metadata or {}).get("url") or "").strip()
    if re.match(r"https?://[^\s\"'<>]+$", url, re.IGNORECASE):
        return url
    return "https://arxiv.org/search/?" + urlencode({"query": " ".join(title.split()),
                                                     "searchtype": "title"})


def title_link(title: str, metadata: dict | None = None) -> str:
    """The escaped title as a link to the paper, opening in a new tab."""
    return (f'<a class="cw-title" href="{html.escape(paper_url(title, metadata))}" target="_blank" '
            f'rel="noopener noreferrer" title="Open the paper in a new tab">{html.escape(title)}</a>')


def _facts(meta: dict) -> list[str]:
    """The paper's date, upvotes and authors, as plain text pieces."""
    facts = [str(meta["published"])] if meta.get("published") else []
    if meta.get("upvotes") is not None:
        facts.append(f"{meta['upvotes']} upvotes")
    if meta.get("n_authors"):
        facts.append(f"{meta['n_authors']} author{'s' if meta['n_authors'] != 1 else ''}")
    if meta.get("authors"):
        facts.append(str(meta["authors"])[:120])
    return facts


def _score(label: str, value: float, help_text: str) -> str:
    return f'<span class="cw-score" title="{html.escape(help_text)}">{label} {value:.2f}</span>'


def source_card(source: Source, evidence: list[str] | None = None, badge: str = "cited") -> str:
    """One retrieved paper as an HTML card; ``evidence`` given means the answer cites it
    (``badge="cited"``) or quotes it as the closest evidence (``badge="closest evidence"``)."""
    meta = source.metadata or {}
    facts = [html.escape(f) for f in _facts(meta)]
    facts.append(_score("relevance", source.score, RELEVANCE_HELP))
    if source.similarity is not None:
        facts.append(_score("similarity", source.similarity, SIMILARITY_HELP))
    marked = evidence is not None
    kind = (" cw-cited" if badge == "cited" else " cw-evidence") if marked else ""
    n = int(source.number)
    return (
        f'<div class="cw-card{kind}" id="source-{n}" data-number="{n}">'
        f'<div class="cw-head"><span class="cw-num">[{n}]</span>{title_link(source.title, meta)}'
        f'{f"<span class=cw-badge>{html.escape(badge)}</span>" if marked else ""}</div>'
        f'<div class="cw-meta">{" · ".join(facts)}</div>'
        f'<details{" open" if marked else ""}><summary>Abstract</summary>'
        f"<p>{highlight(source.abstract or source.text, evidence or [])}</p></details></div>"
    )


def render_sources(answer: Answer | None) -> str:
    """The source cards of an answer, with a head saying which outcome it is: cited papers
    first; for a related outcome the closest evidence first, in amber; a refusal said plainly."""
    if answer is None:
        return EMPTY_SOURCES
    evidence = {c.number: c.evidence for c in answer.citations}
    if answer.outcome == NOT_FOUND:
        evidence = {}
    order = sorted(answer.sources, key=lambda s: (s.number not in evidence, s.number))
    badge = "cited"
    if answer.outcome == RELATED:
        badge = "closest evidence"
        head = (f'<div class="cw-outcome cw-related">{html.escape(RELATED_NOTE)} Its closest '
                "evidence is highlighted below; it does not answer the question.</div>")
    elif answer.outcome == NOT_FOUND:
        tail = " Closest papers found:" if order else " No paper came close."
        head = f'<div class="cw-outcome cw-refusal">{html.escape(REFUSAL + tail)}</div>'
    else:
        took = answer.timings.get("total")
        head = (f'<div class="cw-note">{len(evidence)} cited of {len(order)} papers retrieved'
                f'{f" · answered in {took:.1f} s" if took else ""}</div>')
    cards = "".join(source_card(s, evidence.get(s.number), badge) for s in order)
    return head + (LEGEND if order else "") + cards


def _sources_md(numbered: Iterable[tuple[int, str]], sep: str = " · ") -> str:
    return sep.join(f"{cite_link(n)} {md_text(title)}" for n, title in numbered)


def render_answer(answer: Answer) -> str:
    """The answer as chat Markdown (escaped, citations linked to the cards), by outcome: the
    verified answer; the related note with the quoted closest evidence; or the plain refusal
    naming every paper shown in the sources panel."""
    if answer.outcome == RELATED:
        parts = _related_md(answer)
    elif answer.outcome == NOT_FOUND:
        closest = _sources_md(((s.number, s.title) for s in answer.sources), "; ")
        parts = [md_text(REFUSAL) + (f"\n\n*Closest papers found:* {closest}" if closest else "")]
    else:
        parts = [_cited_md(answer.text),
                 f"*Sources:* {_sources_md((c.number, c.title) for c in answer.citations)}"]
        dropped = sum(1 for s in answer.sentences if not s.supported)
        if dropped:
            parts.append(f"*{dropped} draft sentence{'s' if dropped > 1 else ''} removed: "
                         "the cited abstracts don't support it.*")
    return "\n\n".join(parts + _withheld_md(answer))


def _related_md(answer: Answer) -> list[str]:
    """The related outcome: the pipeline's note (``prompts.RELATED``), the quoted evidence (a
    blockquote, styled amber), the papers it comes from."""
    quotes = [f"“{md_text(' '.join(sentence.split()))}” {cite_link(c.number)}"
              for c in answer.citations for sentence in c.evidence if sentence.strip()]
    if not quotes:  # no structured evidence: quote the text after the fixed opening
        rest = answer.text[len(RELATED_TEXT):] if answer.text.startswith(RELATED_TEXT) else answer.text
        quotes = [_cited_md(" ".join(rest.split()))] if rest.strip() else []
    opening = RELATED_TEXT.removesuffix("Closest evidence:").strip()
    parts = [f"**⚠ {md_text(opening)}**"]
    if quotes:
        parts += [f"*{md_text(RELATED_EVIDENCE)}*", "\n".join(f"> {q}" for q in quotes)]
    papers = {c.number: c.title for c in answer.citations}
    if papers:
        parts.append(f"*Related papers:* {_sources_md(sorted(papers.items()))}")
    return parts


def _withheld_md(answer: Answer) -> list[str]:
    return [f"*Withheld:* {md_text(s.title)} ({md_text(WITHHELD)})" for s in answer.withheld]


def render_draft(draft: str, note: str) -> str:
    note = f"*{md_text(note)}*"
    return f"{_bold_cites(draft)} ▍\n\n{note}" if draft else note


STOPPED_DRAFT = "Stopped: this draft was not checked against the papers."
STOPPED = "Stopped."


def stopped_message(text: str) -> str:
    """An unfinished reply (a streamed draft or a progress note) marked as stopped; a finished
    answer unchanged.

    >>> stopped_message(render_draft("Half an answer", "Checking the citations…"))
    'Half an answer\\n\\n*Stopped: this draft was not checked against the papers.*'
    """
    if " ▍\n\n*" in text:
        return f"{text.rsplit(' ▍', 1)[0]}\n\n*{STOPPED_DRAFT}*"
    if re.fullmatch(r"\*[^*]*…\*", text.strip()):
        return f"*{STOPPED}*"
    return text


def parse_filters(date_from: str | None, date_to: str | None) -> Filters:
    """Date filter boxes → ``Filters`` (which checks them: ``QuestionError``)."""
    return Filters(date_from=date_from, date_to=date_to)


def _message(exc: BaseException) -> str:
    """One readable line for a user error (a pydantic error: its fields and problems)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
    return str(exc)


def check_k(k: object, high: int = 50) -> int | None:
    """``k`` (papers to retrieve) as an int from 1 to ``high``, ``None`` for the default;
    ``QuestionError`` otherwise.

    >>> check_k(5.0), check_k(None)
    (5, None)
    """
    if k is None or k == "":
        return None
    if isinstance(k, bool) or not isinstance(k, (int, float)) or k != int(k) or not 1 <= k <= high:
        raise QuestionError(f"k must be a whole number of papers from 1 to {high} (got {str(k)[:40]!r}).")
    return int(k)


def friendly_error(exc: BaseException) -> "gr.Error":
    """A user-facing ``gr.Error``: the message of a known error, a generic one otherwise."""
    import gradio as gr

    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, (RagError, ValueError)):
        return gr.Error(html.escape(_message(exc), quote=False), print_exception=False)
    log.error("unexpected error while answering", exc_info=exc)
    return gr.Error("Something went wrong on the server (details are in its log). "
                    "Please try again.", print_exception=False)


def question_problem(message: object) -> str | None:
    """Why ``message`` cannot be asked (empty, too long, not text), or ``None`` when it can.

    >>> question_problem("  "), question_problem("What is a pointer network?")
    ('The question is empty; type a question about the papers.', None)
    """
    try:
        clean_question(message)
    except QuestionError as exc:
        return str(exc)
    return None


def date_problem(value: str | None) -> str | None:
    """Why a date filter box holds no date, or ``None`` when it is fine (or empty)."""
    try:
        parse_filters(value, None)
    except QuestionError as exc:
        return str(exc)
    return None


def pumped(events: Iterator, tick: float) -> Iterator[object | None]:
    """``events`` iterated on a worker thread; ``None`` whenever ``tick`` seconds pass with
    no event, so a caller waiting on a slow step (a model still loading) can show progress.

    Closing the returned iterator (the user pressed Stop) makes the worker close ``events``
    at its next event, which stops the generation behind it."""
    box: queue.Queue = queue.Queue()
    done, stop = object(), threading.Event()

    def pump() -> None:
        try:
            for event in events:
                box.put((event, None))
                if stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            box.put((None, exc))
        finally:
            close = getattr(events, "close", None)
            if close:
                close()
            box.put((done, None))

    threading.Thread(target=pump, name="answer-stream", daemon=True).start()
    try:
        while True:
            try:
                event, exc = box.get(timeout=tick)
            except queue.Empty:
                yield None
                continue
            if exc is not None:
                raise exc
            if event is done:
                return
            yield event
    finally:
        stop.set()


class Progress:
    """The chat's progress note while an answer is on its way, with the seconds spent
    waiting once a wait is long (and always while the model loads)."""

    def __init__(self, generator: Generator, clock: Callable[[], float] = time.monotonic):
        self.generator, self.clock = generator, clock
        self.stage, self.detail, self.since, self.draft = "searching", "", clock(), ""

    def update(self, event: Status | Token) -> None:
        if isinstance(event, Token):
            self.draft += event.text
            return
        if event.stage == "generating" and self.stage == "loading" and not self.loaded():
            return  # the generator's stream waits for the model: keep counting the load
        self.stage, self.detail, self.since = event.stage, event.detail, self.clock()

    def loaded(self) -> bool:
        return self.generator.is_loaded

    def render(self) -> str:
        """The message to show now."""
        waited = int(self.clock() - self.since)
        if self.stage == "loading" and not self.loaded():
            name = md_text(self.detail or self.generator.name)
            return (f"*Loading the model {name} ({waited} s)… "
                    "The first question waits for it; later ones don't.*")
        if self.draft:
            return render_draft(self.draft, "Checking the citations…" if self.stage == "verifying"
                                else "Draft: checking each citation against the abstracts…")
        if self.stage in ("generating", "loading"):
            name = self.generator.name or self.detail
            return f"*Reading the papers with {md_text(name)}{f' ({waited} s)' if waited >= 3 else ''}…*"
        if self.stage == "verifying":
            return "*Checking the citations…*"
        return f"*Searching the papers{f' ({waited} s)' if waited >= 3 else ''}…*"


class Login:
    """The app's login check (Gradio calls it with the typed user name and password): a
    constant-time comparison, and after ``max_failures`` wrong passwords in a row every attempt
    is refused for ``lockout`` seconds, so that a password cannot be guessed at network speed.
    Gradio does not pass the client's address to this check; the lock holds for everyone,
    which is the safe side for a single-user login (put a proxy in front for per-address limits).

    >>> login = Login("ada", "secret", max_failures=2, lockout=60)
    >>> login("ada", "x"), login("ada", "y"), login("ada", "secret")
    (False, False, False)
    """

    def __init__(self, user: str, password: str, max_failures: int = 5, lockout: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self._user, self._password = user.encode(), password.encode()
        self.max_failures, self.lockout, self._clock = max_failures, lockout, clock
        self._failures, self._locked_until = 0, float("-inf")
        self._lock = threading.Lock()

    def __call__(self, user: str, password: str) -> bool:
        with self._lock:
            if self._clock() < self._locked_until:
                return False
            ok = hmac.compare_digest(str(user).encode(), self._user) & hmac.compare_digest(
                str(password).encode(), self._password)
            if ok:
                self._failures = 0
                return True
            self._failures += 1
            if self._failures >= self.max_failures:
                self._failures, self._locked_until = 0, self._clock() + self.lockout
                log.warning("%d wrong logins in a row: logins refused for %.0f s",
                            self.max_failures, self.lockout)
            return False


class ChatUI:
    """The app's handlers, bound to one pipeline (plain functions, testable without a browser).

    ``ready``, when given, is set once the index and the embedder are loaded (``app.py`` loads
    them in the background after serving the page); questions asked before wait for it."""

    def __init__(self, pipeline: "Pipeline", ready: threading.Event | None = None, tick: float = TICK):
        self.pipeline, self.ready, self.tick = pipeline, ready, tick
        self._papers: tuple[int, list] = (-1, [])

    def validate(self, message: str) -> dict:
        """The chat box's check before anything runs: a bad question stays in the box, with
        the reason under it, and the conversation is left as it was."""
        import gradio as gr

        problem = question_problem(message)
        return gr.validate(problem is None, problem or "")

    def validate_date(self, value: str) -> dict:
        """A date filter box's check, shown under the box as it is left."""
        import gradio as gr

        problem = date_problem(value)
        return gr.validate(problem is None, problem or "")

    def respond(self, message: str, history: list, k: int | None = None, mode: str | None = None,
                date_from: str = "", date_to: str = "") -> Iterator[tuple[str, str, str]]:
        """``stream_chat`` without the Markdown: ``(reply, sources_html, info)``."""
        with closing(self.stream_chat(message, history, k, mode, date_from, date_to)) as updates:
            for reply, sources, info, _ in updates:
                yield reply, sources, info

    def stream_chat(self, message: str, history: list, k: int | None = None, mode: str | None = None,
                    date_from: str = "", date_to: str = "") -> Iterator[tuple[str, str, str, str]]:
        """Stream an answer to ``message`` after the conversation ``history``: yields
        ``(reply, sources_html, info, markdown)``, the progress and the draft token by token,
        then the verified answer in its place, with its source cards and, for the Copy as
        Markdown button, the answer and its references as ``export.to_markdown`` writes them.
        A problem is a warning toast and a note in the reply; the sources panel, the info and
        the Markdown keep what they showed (``gr.skip()``)."""
        import gradio as gr

        skip = gr.skip()
        try:
            question = clean_question(message)
            filters, n_papers = parse_filters(date_from, date_to), check_k(k)
            if self.ready is not None and not self.ready.is_set():  # app.py is loading them
                started = time.monotonic()
                while not self.ready.wait(self.tick):
                    yield (f"*Loading the search index ({int(time.monotonic() - started)} s)…*",
                           skip, skip, skip)
            pipeline = self.pipeline
            progress = Progress(pipeline.generator)
            last = progress.render()
            yield last, skip, skip, skip
            answer = None
            events = pipeline.stream(question, history=list(history or []), filters=filters,
                                     k=n_papers, mode=mode or None)
            for event in pumped(events, self.tick):
                if isinstance(event, Answer):
                    answer = event
                    yield (render_answer(answer), render_sources(answer), self.info(),
                           to_markdown(answer))
                    continue
                if isinstance(event, (Status, Token)):
                    progress.update(event)
                if (shown := progress.render()) != last:  # a tick with nothing new is silent
                    last = shown
                    yield shown, skip, skip, skip
            if answer is None:
                raise RuntimeError("the pipeline ended without an answer")
        except Exception as exc:
            problem = friendly_error(exc).message
            gr.Warning(problem)
            yield f"⚠️ {md_text(html.unescape(problem))}", skip, skip, skip

    def stopped(self, chat: list) -> list:
        """The conversation after Stop: the unfinished reply marked as stopped."""
        chat = list(chat or [])
        if chat and chat[-1].get("role") == "assistant":
            last = dict(chat[-1])
            content = last.get("content")
            if isinstance(content, str):
                last["content"] = stopped_message(content)
            elif isinstance(content, list) and content and isinstance(content[-1], dict) \
                    and content[-1].get("type") == "text":
                last["content"] = [*content[:-1], {**content[-1],
                                                   "text": stopped_message(content[-1]["text"])}]
            chat[-1] = last
        return chat

    def ask(self, question: str, k: int | None = None) -> dict:
        """Answer ``question`` from the indexed abstracts; the answer as JSON (``Answer.to_dict``)."""
        try:
            check_k(k)
            if self.ready is not None:
                self.ready.wait()
            events = self.pipeline.stream(question, k=check_k(k))
            return [e for e in events if isinstance(e, Answer)][-1].to_dict()
        except Exception as exc:
            raise friendly_error(exc) from None

    def papers(self) -> list[Paper]:
        """The indexed papers (re-read when the index changed size)."""
        count = self.pipeline.index.count()
        if count != self._papers[0]:
            self._papers = (count, self.pipeline.index.papers())
        return self._papers[1]

    def matching_papers(self, text: str | None) -> list[Paper]:
        """The papers whose title or abstract contains ``text`` (any case and spacing; all of
        them for no text)."""
        needle = " ".join((text or "").split()).casefold()
        return [p for p in self.papers()
                if needle in p.title.casefold() or needle in " ".join(p.abstract.split()).casefold()]

    def filter_papers(self, text: str) -> list[list]:
        """Table rows of the papers whose title or abstract contains ``text``."""
        return [_row(p.title, p.published, p.upvotes, p.n_authors) for p in self.matching_papers(text)]

    def search_papers(self, text: str, mode: str | None = None) -> list[list]:
        """Table rows of the 10 papers closest in meaning to ``text``."""
        try:
            if self.ready is not None:
                self.ready.wait()
            sources = self.pipeline.search(text, k=10, mode=mode)
        except Exception as exc:
            raise friendly_error(exc) from None
        return [_row(s.title, *(s.metadata.get(key) for key in ("published", "upvotes", "n_authors")),
                     f"{s.score:.2f}") for s in sources]

    def paper_detail(self, row: list | None) -> str:
        """The paper of a table row (its title cell) as a card: title linked, facts, abstract."""
        title = str((row or [""])[0] or "")
        paper = next((p for p in self.papers() if p.title == title), None)
        if paper is None:
            return PAPER_HINT
        meta = {"published": paper.published, "upvotes": paper.upvotes,
                "n_authors": paper.n_authors, "authors": paper.authors,
                "url": getattr(paper, "url", None)}
        facts = _facts(meta) + ([" ".join(paper.categories)] if paper.categories else [])
        return (f'<div class="cw-card cw-paper" data-paper-id="{html.escape(paper.paper_id)}">'
                f'<div class="cw-head">{title_link(paper.title, meta)}</div>'
                f'<div class="cw-meta">{html.escape(" · ".join(facts))}</div>'
                f"<p>{html.escape(' '.join(paper.abstract.split()))}</p></div>")

    def info(self) -> str:
        """What is actually in use: model, device, index size and date coverage."""
        generator, papers = self.pipeline.generator, self.papers()
        dated = sorted(p.published for p in papers if p.published)
        span = f", {len(dated)} dated {dated[0]} … {dated[-1]}" if dated else ", none dated"
        if 0 < len(dated) < len(papers):
            span += f" (a date filter leaves out the other {len(papers) - len(dated)})"
        return (f"**Model:** {md_text(generator.name)} on {md_text(generator.device)}  \n"
                f"**Index:** {len(papers)} papers{md_text(span)}, {self.pipeline.index.count()} chunks")


def _row(*cells: object) -> list[str]:
    return ["" if cell is None else str(cell) for cell in (*cells, "")[:len(TABLE_HEADERS)]]


def launch_options() -> dict:
    """Theme, CSS and page script, which Gradio 6 takes at ``launch()``:
    ``demo.launch(**launch_options())``."""
    import gradio as gr

    return {"theme": gr.themes.Soft(primary_hue="indigo"), "css": CSS, "head": HEAD}


def _nothing(*_: object) -> None:
    """An event's function when only its validator matters."""


def _share_generation_slot(demo: "gr.Blocks", fn: Callable, concurrency_id: str) -> None:
    """Put every event of ``demo`` that runs ``fn`` (the chat interface wraps it) in one
    concurrency group, shared with the ``/ask`` API: one generation at a time, queued."""
    for block_fn in demo.fns.values():
        if getattr(block_fn.fn, "__wrapped__", None) == fn:
            block_fn.concurrency_id = concurrency_id


def build_app(pipeline: "Pipeline", ready: threading.Event | None = None) -> "gr.Blocks":
    """The whole app for ``pipeline`` (chat, papers, ``/ask`` API), queued, not launched.
    Building it opens nothing: the papers table and the index facts are read as a page loads.
    ``ready``: see ``ChatUI``."""
    import gradio as gr

    ui, s, private = ChatUI(pipeline, ready), pipeline.settings, {"api_visibility": "private"}
    with gr.Blocks(title="citewise", analytics_enabled=False) as demo:
        gr.Markdown("## citewise\nAnswers from research-paper abstracts: every claim cited "
                    "and checked, or a plain *the papers don't say*.")
        cards = gr.HTML(EMPTY_SOURCES, elem_id="cw-sources", render=False)
        info = gr.Markdown("*Opening the index…*", elem_id="cw-info", render=False)
        markdown = markdown_box()
        with gr.Tab("Chat"), gr.Row(equal_height=False):
            with gr.Column(scale=3):
                k = gr.Slider(1, 10, value=min(s.top_k, 10), step=1, label="Papers to retrieve",
                              elem_id="cw-k", render=False)
                mode = gr.Radio(MODES, value=s.retrieval_mode, label="Retrieval mode",
                                elem_id="cw-mode", render=False)
                d_from = gr.Textbox(label="Published from", placeholder="YYYY or YYYY-MM-DD",
                                    elem_id="cw-from", render=False)
                d_to = gr.Textbox(label="Published to", placeholder="YYYY or YYYY-MM-DD",
                                  elem_id="cw-to", render=False)
                chatbot = gr.Chatbot(label="Conversation", show_label=False, height=520,
                                     latex_delimiters=[], feedback_options=None, buttons=["copy"],
                                     editable="user", elem_id="cw-chat",
                                     placeholder="Ask about the indexed papers.")
                box = gr.Textbox(label="Question", show_label=False, submit_btn="Ask", stop_btn="Stop",
                                 placeholder="Ask a question about the papers…",
                                 elem_id="cw-question", lines=1, max_lines=6)
                chat = gr.ChatInterface(
                    ui.stream_chat, chatbot=chatbot, textbox=box,
                    additional_inputs=[k, mode, d_from, d_to],
                    additional_inputs_accordion=gr.Accordion("Settings", open=False, render=False),
                    additional_outputs=[cards, info, markdown], examples=[[q] for q in EXAMPLES],
                    editable=True, save_history=True, validator=ui.validate, fill_height=False,
                    analytics_enabled=False, api_visibility="private", show_progress="hidden",
                )
                info.render()
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                copy_button(markdown)
                cards.render()
        with gr.Tab("Papers"):
            query = gr.Textbox(label="Find papers", placeholder="Words in the title or abstract, "
                               "or a description for semantic search")
            with gr.Row():
                find = gr.Button("Filter by text")
                semantic = gr.Button("Semantic search", variant="primary")
            with gr.Row(equal_height=False):
                with gr.Column(scale=2):
                    table = gr.Dataframe([], headers=TABLE_HEADERS, wrap=True,
                                         interactive=False, max_height=600, elem_id="cw-papers",
                                         column_widths=["58%", "12%", "10%", "10%", "10%"])
                with gr.Column(scale=1):
                    detail = gr.HTML(PAPER_HINT, elem_id="cw-paper")

        def show_paper(event: gr.SelectData) -> str:
            return ui.paper_detail(event.row_value)

        for box_ in (d_from, d_to):
            box_.blur(_nothing, box_, None, validator=ui.validate_date, **private)
        box.stop(ui.stopped, chatbot, chatbot, queue=False, **private).then(
            lambda x: (x, x), chatbot, [chat.chatbot_state, chat.chatbot_value], queue=False, **private)
        chatbot.clear(lambda: (EMPTY_SOURCES, cleared()), None, [cards, markdown], queue=False, **private)
        for trigger in (query.submit, find.click):
            trigger(ui.filter_papers, query, table, queue=False, **private)
        semantic.click(ui.search_papers, [query, mode], table, concurrency_id="search", **private)
        table.select(show_paper, None, detail, queue=False, **private)
        gr.api(ui.ask, api_name="ask", concurrency_id="generate")
        demo.load(ui.info, None, info, queue=False, **private)  # the index opens after the page
        demo.load(ui.filter_papers, query, table, queue=False, **private)
    _share_generation_slot(demo, ui.stream_chat, "generate")
    demo.queue(default_concurrency_limit=1, max_size=32)
    return demo
