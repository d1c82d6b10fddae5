"""The web app: streamed, citation-checked answers beside the papers they come from.

``build_app(pipeline)`` returns a queued ``gr.Blocks`` and launches nothing (``app.py``
does). The chat handler is a plain generator, ``ChatUI.respond``, tested with a fake
pipeline. Every paper text and answer is HTML-escaped before it goes into markup, so an
abstract holding ``<script>`` shows as text, and supporting sentences are highlighted:

>>> highlight("A <b>bold</b> claim. Another one.", ["Another one."])
'A &lt;b&gt;bold&lt;/b&gt; claim. <mark>Another one.</mark>'
"""

import hmac
import html
import logging
import re
import threading
import time
from datetime import date

from .errors import QuestionError, RagError
from .prompts import REFUSAL, WITHHELD
from .retrieval import Filters
from .types import Answer, Source, Status, Token

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
MODES = ["hybrid", "dense", "bm25"]
TABLE_HEADERS = ["Title", "Date", "Upvotes", "Authors", "Relevance"]
EMPTY_SOURCES = '<div class="cw-note">The papers behind each answer appear here.</div>'
FINDING = '<div class="cw-note">Finding the papers…</div>'
CSS = """
.cw-card {border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px 12px;
  margin-bottom: 10px; background: var(--background-fill-primary); overflow-wrap: anywhere;}
.cw-card.cw-cited {border-left: 4px solid var(--color-accent);}
.cw-head {font-weight: 600; line-height: 1.35;} .cw-num {color: var(--color-accent); margin-right: 4px;}
.cw-badge {margin-left: 6px; font-size: .75em; padding: 1px 7px; border-radius: 9px;
  background: var(--color-accent); color: white; vertical-align: middle;}
.cw-meta, .cw-note {font-size: .85em; color: var(--body-text-color-subdued); margin: 3px 0 6px;}
.cw-card summary {cursor: pointer; font-size: .85em;}
.cw-card p {font-size: .9em; line-height: 1.5; margin: 6px 0 0;}
.cw-card mark {background: #fde68a; color: #1f2937; padding: 0 2px; border-radius: 3px;}
.cw-refusal {font-weight: 600; margin-bottom: 8px;}
"""

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-!|~$])")
_CITE = re.compile(r"\\\[(\d+)\\\]")


def md_text(text: object) -> str:
    """Text made inert for the chat's Markdown: HTML escaped, Markdown syntax escaped."""
    return _MARKDOWN.sub(r"\\\1", html.escape(str(text), quote=False))


def _cited_md(text: str) -> str:
    """Escaped text with its ``[n]`` citation marks in bold."""
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


def source_card(source: Source, evidence: list[str] | None = None) -> str:
    """One retrieved paper as an HTML card; ``evidence`` given means the answer cites it."""
    meta, esc = source.metadata or {}, html.escape
    facts = [str(meta["published"])] if meta.get("published") else []
    if meta.get("upvotes") is not None:
        facts.append(f"{meta['upvotes']} upvotes")
    if meta.get("n_authors"):
        facts.append(f"{meta['n_authors']} author{'s' if meta['n_authors'] != 1 else ''}")
    if meta.get("authors"):
        facts.append(str(meta["authors"])[:120])
    facts.append(f"relevance {source.score:.2f}")
    if source.similarity is not None:
        facts.append(f"similarity {source.similarity:.2f}")
    cited = evidence is not None
    n = int(source.number)
    return (
        f'<div class="cw-card{" cw-cited" if cited else ""}" id="source-{n}" data-number="{n}">'
        f'<div class="cw-head"><span class="cw-num">[{n}]</span>'
        f'<span class="cw-title">{esc(source.title)}</span>'
        f'{"<span class=cw-badge>cited</span>" if cited else ""}</div>'
        f'<div class="cw-meta">{esc(" · ".join(facts))}</div>'
        f'<details{" open" if cited else ""}><summary>Abstract</summary>'
        f"<p>{highlight(source.abstract or source.text, evidence or [])}</p></details></div>"
    )


def render_sources(answer: Answer | None) -> str:
    """The source cards of an answer: cited papers first, a refusal said plainly."""
    if answer is None:
        return EMPTY_SOURCES
    cited = {c.number: c.evidence for c in answer.citations}
    order = sorted(answer.sources, key=lambda s: (s.number not in cited, s.number))
    if answer.outcome == "related":
        head = ('<div class="cw-refusal">Found related papers, but could not verify an answer; '
                'the closest evidence is highlighted below.</div>')
    elif answer.refused:
        tail = " Closest papers found:" if order else " No paper came close."
        head = f'<div class="cw-refusal">{html.escape(REFUSAL + tail)}</div>'
    else:
        took = answer.timings.get("total")
        head = (f'<div class="cw-note">{len(cited)} cited of {len(order)} papers retrieved'
                f'{f" · answered in {took:.1f} s" if took else ""}</div>')
    return head + "".join(source_card(s, cited.get(s.number)) for s in order)


def render_answer(answer: Answer) -> str:
    """The verified answer as chat Markdown (escaped), or the plain refusal."""
    if answer.outcome == "related":
        cited = " · ".join(f"[{c.number}] {c.title}" for c in answer.citations)
        return "\n\n".join([_cited_md(answer.text), f"*Unverified evidence from:* {_cited_md(cited)}",
                             *_withheld_md(answer)])
    if answer.refused:
        closest = "; ".join(f"[{s.number}] {s.title}" for s in answer.sources[:3])
        return "\n\n".join([md_text(REFUSAL) + (f"\n\n*Closest papers found:* {md_text(closest)}"
                                                if closest else ""), *_withheld_md(answer)])
    cited = " · ".join(f"[{c.number}] {c.title}" for c in answer.citations)
    parts = [_cited_md(answer.text), f"*Sources:* {_cited_md(cited)}"]
    dropped = sum(1 for s in answer.sentences if not s.supported)
    if dropped:
        parts.append(f"*{dropped} draft sentence{'s' if dropped > 1 else ''} removed: "
                     "the cited abstracts don't support it.*")
    return "\n\n".join(parts + _withheld_md(answer))


def _withheld_md(answer: Answer) -> list[str]:
    return [f"*Withheld:* {md_text(s.title)} ({md_text(WITHHELD)})" for s in answer.withheld]


def render_draft(draft: str, note: str) -> str:
    note = f"*{md_text(note)}*"
    return f"{_cited_md(draft)} ▍\n\n{note}" if draft else note


def parse_filters(date_from: str | None, date_to: str | None) -> Filters:
    """Date filter boxes → ``Filters``; ``ValueError`` with a clear message when malformed."""
    days = []
    for label, value in (("From", date_from), ("To", date_to)):
        value = (value or "").strip()
        if value and not re.fullmatch(r"\d{4}(-\d{2}-\d{2})?", value):
            raise ValueError(f"{label} date {value!r} is not a date; use YYYY-MM-DD (or YYYY).")
        if len(value) == 10:
            date.fromisoformat(value)  # rejects 2023-02-30 with its own clear message
        days.append(value or None)
    if days[0] and days[1] and days[0] > days[1]:
        raise ValueError(f"The From date ({days[0]}) is after the To date ({days[1]}).")
    return Filters(date_from=days[0], date_to=days[1])


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


def friendly_error(exc: BaseException):  # noqa: ANN201 - a gr.Error
    """A user-facing ``gr.Error``: the message of a known error, a generic one otherwise."""
    import gradio as gr

    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, (RagError, ValueError)):
        return gr.Error(html.escape(_message(exc), quote=False), print_exception=False)
    log.error("unexpected error while answering", exc_info=exc)
    return gr.Error("Something went wrong on the server (details are in its log). "
                    "Please try again.", print_exception=False)


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
                 clock=time.monotonic):  # noqa: ANN001
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
    """The app's handlers, bound to one pipeline (plain functions, testable without a browser)."""

    def __init__(self, pipeline):  # noqa: ANN001
        self.pipeline = pipeline
        self._views: dict[tuple[int, str], object] = {}
        self._lock = threading.Lock()
        self._papers: tuple[int, list] = (-1, [])

    def view(self, k: int | float | None = None, mode: str | None = None):  # noqa: ANN201
        """The pipeline answering with ``k`` papers in ``mode`` (cached views share the models)."""
        s = self.pipeline.settings
        key = (int(k or s.top_k), mode or s.retrieval_mode)
        if key == (s.top_k, s.retrieval_mode):
            return self.pipeline
        with self._lock:
            if key not in self._views:
                from .pipeline import Pipeline

                p = self.pipeline
                self._views[key] = Pipeline(
                    s.with_overrides(top_k=key[0], retrieval_mode=key[1]),
                    generator=p.generator, embedder=p.retriever.embedder, index=p.index,
                )
            return self._views[key]

    def add_question(self, question: str, chat: list) -> tuple[str, list, str]:
        """Show the question at once (even while queued) and clear the box."""
        question = (question or "").strip()
        chat = list(chat or [])
        if question:
            chat.append({"role": "user", "content": md_text(question)})
        return "", chat, question

    def respond(self, question, chat, turns, k=None, mode=None,  # noqa: ANN001, ANN201
                date_from="", date_to=""):
        """Stream an answer: yields ``(chat, turns, sources_html)``, the draft token by token,
        then the verified answer in its place. ``turns`` is the raw conversation so far."""
        chat, turns = list(chat or []), list(turns or [])
        if not (question or "").strip():
            raise friendly_error(ValueError("Type a question about the papers first."))
        shown, cards, draft, answer = "*Searching the papers…*", FINDING, "", None
        try:
            filters = parse_filters(date_from, date_to)
            events = self.view(check_k(k), mode).stream(question, history=turns, filters=filters)
            yield [*chat, {"role": "assistant", "content": shown}], turns, cards
            for event in events:
                if isinstance(event, Token):
                    draft += event.text
                    shown = render_draft(draft, "Draft: checking each citation against the abstracts…")
                elif isinstance(event, Status) and event.stage == "loading":
                    shown = f"*Loading the model {md_text(event.detail)} (first question only)…*"
                elif isinstance(event, Status) and event.stage in ("generating", "verifying"):
                    shown = render_draft(draft, f"Reading the papers with {event.detail}…"
                                         if event.stage == "generating" else "Checking the citations…")
                elif isinstance(event, Answer):
                    answer = event
                    shown, cards = render_answer(answer), render_sources(answer)
                    turns = [*turns, {"role": "user", "content": question},
                             {"role": "assistant", "content": answer.text}]
                yield [*chat, {"role": "assistant", "content": shown}], turns, cards
            if answer is None:
                raise RuntimeError("the pipeline ended without an answer")
        except Exception as exc:
            error = friendly_error(exc)
            note = f"⚠️ {md_text(html.unescape(error.message))}"
            yield [*chat, {"role": "assistant", "content": note}], turns, EMPTY_SOURCES
            raise error from None

    def ask(self, question: str, k: int | None = None) -> dict:
        """Answer ``question`` from the indexed abstracts; the answer as JSON (``Answer.to_dict``)."""
        try:
            return [e for e in self.view(check_k(k)).stream(question) if isinstance(e, Answer)][-1].to_dict()
        except Exception as exc:
            raise friendly_error(exc) from None

    def papers(self) -> list:
        """The indexed papers (re-read when the index changed size)."""
        count = self.pipeline.index.count()
        if count != self._papers[0]:
            self._papers = (count, self.pipeline.index.papers())
        return self._papers[1]

    def filter_papers(self, text: str) -> list[list]:
        """Table rows of the papers whose title or abstract contains ``text``."""
        needle = " ".join((text or "").split()).casefold()
        return [_row(p.title, p.published, p.upvotes, p.n_authors) for p in self.papers()
                if needle in p.title.casefold() or needle in " ".join(p.abstract.split()).casefold()]

    def search_papers(self, text: str, mode: str | None = None) -> list[list]:
        """Table rows of the 10 papers closest in meaning to ``text``."""
        try:
            sources = self.pipeline.search(text, k=10, mode=mode)
        except Exception as exc:
            raise friendly_error(exc) from None
        return [_row(s.title, *(s.metadata.get(key) for key in ("published", "upvotes", "n_authors")),
                     f"{s.score:.2f}") for s in sources]

    def info(self) -> str:
        """What is actually in use: model, device, index size and date coverage."""
        generator, papers = self.pipeline.generator, self.papers()
        dated = sorted(p.published for p in papers if p.published)
        span = f", {len(dated)} dated {dated[0]} … {dated[-1]}" if dated else ""
        return (f"**Model:** {md_text(generator.name)} on {md_text(generator.device)}  \n"
                f"**Index:** {len(papers)} papers{md_text(span)}, {self.pipeline.index.count()} chunks")


def _row(*cells: object) -> list[str]:
    return ["" if cell is None else str(cell) for cell in (*cells, "")[:len(TABLE_HEADERS)]]


def launch_options() -> dict:
    """Theme and CSS, which Gradio 6 takes at ``launch()``: ``demo.launch(**launch_options())``."""
    import gradio as gr

    return {"theme": gr.themes.Soft(primary_hue="indigo"), "css": CSS}


def build_app(pipeline) -> "gr.Blocks":  # noqa: ANN001, F821
    """The whole app for ``pipeline`` (chat, papers, ``/ask`` API), queued, not launched."""
    import gradio as gr

    ui, s, private = ChatUI(pipeline), pipeline.settings, {"api_visibility": "private"}
    n_papers, dated = len(ui.papers()), sorted(p.published for p in ui.papers() if p.published)
    with gr.Blocks(title="citewise", analytics_enabled=False) as demo:
        gr.Markdown("## citewise\nAnswers from research-paper abstracts: every claim cited "
                    "and checked, or a plain *the papers don't say*.")
        turns, pending = gr.State([]), gr.State("")
        with gr.Tab("Chat"), gr.Row(equal_height=False):
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="Conversation", height=480, latex_delimiters=[],
                                  feedback_options=None, buttons=["copy"], elem_id="cw-chat",
                                  placeholder="Ask about the indexed papers.")
                with gr.Row():
                    box = gr.Textbox(placeholder="Ask a question about the papers…",
                                     show_label=False, scale=6, elem_id="cw-question")
                    send = gr.Button("Ask", variant="primary", min_width=80, elem_id="cw-ask")
                    clear = gr.Button("Clear", min_width=80, elem_id="cw-clear")
                gr.Examples(EXAMPLES, inputs=box, label="Examples")
                with gr.Accordion("Settings", open=False):
                    k = gr.Slider(1, 10, value=min(s.top_k, 10), step=1, label="Papers to retrieve")
                    mode = gr.Radio(MODES, value=s.retrieval_mode, label="Retrieval mode")
                    with gr.Row(visible=bool(dated)):
                        d_from = gr.Textbox(label="Published from", placeholder=(dated or ["YYYY"])[0])
                        d_to = gr.Textbox(label="Published to", placeholder=(dated or ["YYYY-MM-DD"])[-1])
                    if 0 < len(dated) < n_papers:
                        gr.Markdown(f"{len(dated)} of {n_papers} papers have a date; "
                                    "a date filter leaves out the others.")
                    info = gr.Markdown(ui.info())
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                cards = gr.HTML(EMPTY_SOURCES, elem_id="cw-sources")
        with gr.Tab("Papers"):
            query = gr.Textbox(label="Find papers", placeholder="Words in the title or abstract, "
                               "or a description for semantic search")
            with gr.Row():
                find = gr.Button("Filter by text")
                semantic = gr.Button("Semantic search", variant="primary")
            table = gr.Dataframe(ui.filter_papers(""), headers=TABLE_HEADERS, wrap=True,
                                 interactive=False, max_height=600, elem_id="cw-papers",
                                 column_widths=["58%", "12%", "10%", "10%", "10%"])
        for trigger in (box.submit, send.click):
            trigger(ui.add_question, [box, chat], [box, chat, pending], queue=False, **private).then(
                ui.respond, [pending, chat, turns, k, mode, d_from, d_to], [chat, turns, cards],
                concurrency_id="generate", **private,
            ).then(ui.info, None, info, queue=False, **private)
        clear.click(lambda: ([], [], EMPTY_SOURCES), None, [chat, turns, cards], queue=False, **private)
        for trigger in (query.submit, find.click):
            trigger(ui.filter_papers, query, table, queue=False, **private)
        semantic.click(ui.search_papers, [query, mode], table, concurrency_id="search", **private)
        gr.api(ui.ask, api_name="ask", concurrency_id="generate")
        demo.load(ui.info, None, info, queue=False, **private)
    demo.queue(default_concurrency_limit=1, max_size=32)
    return demo
