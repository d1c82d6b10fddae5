"""The app's handlers and renderers with a scripted pipeline: streaming, the three outcomes,
citations linked to source cards, paper links, refusals, input checks, errors, escaping of
hostile text, multi-turn history, loading states, stop, Copy as Markdown, the Papers detail,
the /ask API."""

from __future__ import annotations

import copy
import html
import logging
import re
import threading
import time
from dataclasses import replace
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from helpers import free_port
from rag.config import Settings
from rag.errors import QuestionError
from rag.export import to_markdown
from rag.prompts import REFUSAL, RELATED
from rag.types import Answer, AnswerSentence, Citation, Paper, Source, Status, Token
from rag.ui import (
    ChatUI,
    build_app,
    highlight,
    md_text,
    parse_filters,
    paper_url,
    render_answer,
    render_sources,
    stopped_message,
)

gr = pytest.importorskip("gradio")

NAS = "Neural Architecture Search with Reinforcement Learning"
NAS_EVIDENCE = ("Our CIFAR-10 model achieves a test error rate of 3.65, which is 0.09 percent "
                "better and 1.05x faster than the previous state-of-the-art model.")
NAS_ABSTRACT = ("Neural networks are hard to design. We use a recurrent network to generate model "
                f"descriptions and train it with reinforcement learning. {NAS_EVIDENCE} "
                "We also design a novel recurrent cell.")
HOPFIELD = "Hopfield Networks is All You Need"
HOSTILE = ("We study <b>widgets</b>. <script>alert(1)</script> Widgets are 3x faster "
           "<img src=x onerror=alert(1)> than gadgets. ${alert(1)} {{constructor}}")


def source(number, title, abstract, **meta):  # noqa: ANN001, ANN003, ANN201
    return Source(number=number, paper_id=title.lower().replace(" ", "-"), title=title,
                  score=round(1.0 / number, 4), text=abstract[:80], abstract=abstract,
                  metadata=meta, similarity=round(0.6 / number, 4))


SOURCES = [
    source(1, HOPFIELD, "The new Hopfield network has an update rule equal to attention.",
           published="2020-07-16", upvotes=3, n_authors=16),
    source(2, NAS, NAS_ABSTRACT, published="2016-11-05", n_authors=2),
]
ANSWER = Answer(
    question="", text="The CIFAR-10 model reaches a test error rate of 3.65 [2].", refused=False,
    citations=[Citation(2, SOURCES[1].paper_id, NAS, [NAS_EVIDENCE])], sources=SOURCES,
    sentences=[
        AnswerSentence("The CIFAR-10 model reaches a test error rate of 3.65 [2].", [2], 0.9, True),
        AnswerSentence("It was trained on Mars [1].", [], 0.0, False),
    ],
    timings={"total": 1.5}, model="fake-model", device="cpu",
)
REFUSED = Answer(question="", text=REFUSAL, refused=True, refusal_reason="the model found no answer",
                 sources=SOURCES)
TOKENS = ["The CIFAR-10 ", "model reaches ", "a test error rate of 3.65 [2]. ", "It was trained ", "on Mars [1]."]


class FakeIndex:
    def __init__(self, papers: list[Paper]):
        self._papers = papers

    def count(self) -> int:
        return 2 * len(self._papers)

    def papers(self) -> list[Paper]:
        return list(self._papers)


class FakePipeline:
    """Streams scripted tokens, then a scripted Answer; records every call it gets."""

    def __init__(self, answer: Answer = ANSWER, tokens=TOKENS, error: Exception | None = None):  # noqa: ANN001
        self.settings = Settings()
        self.generator = SimpleNamespace(name="fake-model", device="cpu (fake)", is_loaded=True)
        self.index = FakeIndex([
            Paper(s.paper_id, s.title, s.abstract, n_authors=s.metadata.get("n_authors"),
                  published=s.metadata.get("published"), upvotes=s.metadata.get("upvotes"))
            for s in SOURCES
        ])
        self.answer, self.tokens, self.error = answer, list(tokens), error
        self.calls: list[dict] = []

    def stream(self, question, history=None, filters=None, k=None, mode=None):  # noqa: ANN001, ANN201
        self.calls.append({"question": question, "history": copy.deepcopy(history), "filters": filters})
        yield Status("searching", question)
        if self.error:
            raise self.error
        yield Status("generating", self.generator.name)
        for piece in self.tokens:
            yield Token(piece)
        yield Status("verifying")
        yield replace(self.answer, question=question)

    def search(self, query, k=None, filters=None, mode=None):  # noqa: ANN001, ANN201
        self.calls.append({"search": query, "k": k, "mode": mode})
        return self.answer.sources[:k]


def ask(ui: ChatUI, question: str, history=None, **settings):  # noqa: ANN001, ANN003, ANN201
    """What the chat interface does: stream the reply. Every ``(reply, sources, info)`` update."""
    return list(ui.respond(question, history or [], **settings))


def final(updates: list) -> tuple[str, str]:
    """The last reply and the last sources panel sent (``gr.skip()`` updates leave it as was)."""
    cards = [c for _, c, _ in updates if isinstance(c, str)]
    return updates[-1][0], (cards[-1] if cards else "")


_LINK = re.compile(r"\[(\\\[\d+\\\])\]\(#source-\d+\)")


def plain(markdown: str) -> str:
    """What the chat shows for our Markdown: links as their text, escapes undone, emphasis
    markers dropped."""
    text = _LINK.sub(r"\1", markdown)
    text = re.sub(r"(?<!\\)\*+", "", text)
    return html.unescape(re.sub(r"\\(.)", r"\1", text))


def text_of(markup: str) -> str:
    """The visible text of an HTML fragment."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


class TagCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: set[str] = set()
        self.links: list[dict] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.tags.add(tag)
        self.attrs |= {name for name, _ in attrs}
        if tag == "a":
            self.links.append(dict(attrs))


def tags_of(markup: str) -> TagCollector:
    parser = TagCollector()
    parser.feed(markup)
    return parser


# --- streaming --------------------------------------------------------------------------------
def test_draft_streams_then_the_verified_answer_replaces_it():
    updates = ask(ChatUI(FakePipeline()), "What error rate does NAS reach on CIFAR-10?")
    shown = [reply for reply, _, _ in updates]
    assert "Searching" in shown[0]
    drafts = [plain(s) for s in shown if "Draft" in s]
    assert len(drafts) == len(TOKENS)
    for before, after in zip(drafts, drafts[1:]):  # the draft grows token by token
        assert after.split(" ▍")[0].startswith(before.split(" ▍")[0])
    assert "on Mars" in drafts[-1]
    reply, cards = final(updates)
    assert plain(reply).startswith(ANSWER.text) and "Mars" not in plain(reply).split("\n")[0]
    assert "Draft" not in reply and "1 draft sentence removed" in plain(reply)
    assert all(not isinstance(c, str) for _, c, _ in updates[:-1])  # the panel waits for the answer
    assert 'id="source-2"' in cards and "fake-model" in plain(updates[-1][2])


def test_citations_link_to_their_numbered_source_cards():
    reply, cards = final(ask(ChatUI(FakePipeline()), "NAS on CIFAR-10?"))
    assert "[\\[2\\]](#source-2)" in reply and f"Sources: [2] {NAS}" in plain(reply)
    for number in re.findall(r"\]\(#source-(\d+)\)", reply):  # every link has its card
        assert f'id="source-{number}"' in cards
    cited = re.findall(r'<div class="cw-card cw-cited" id="source-(\d+)"', cards)
    assert cited == ["2"]
    assert cards.index('id="source-2"') < cards.index('id="source-1"')  # cited first
    card = cards[cards.index('id="source-2"'):cards.index('id="source-1"')]
    assert "[2]</span>" in card and "cited</span>" in card and "<details open>" in card
    assert f"<mark>{html.escape(NAS_EVIDENCE)}</mark>" in card
    assert "2016-11-05 · 2 authors · relevance 0.50 · similarity 0.30" in text_of(card)
    other = cards[cards.index('id="source-1"'):]
    assert "cited<" not in other and "<mark>" not in other and "3 upvotes" in other
    assert "1 cited of 2 papers retrieved · answered in 1.5 s" in cards


def test_draft_citations_are_not_links_yet():
    updates = ask(ChatUI(FakePipeline()), "NAS?")
    drafts = [reply for reply, _, _ in updates if "Draft" in reply]
    assert "**\\[2\\]**" in drafts[-1] and "#source-" not in drafts[-1]


def test_card_titles_link_to_the_paper_in_a_new_tab():
    cards = render_sources(ANSWER)
    links = tags_of(cards).links
    assert [link["href"] for link in links] == [
        "https://arxiv.org/search/?query=Neural+Architecture+Search+with+Reinforcement+Learning"
        "&searchtype=title",
        "https://arxiv.org/search/?query=Hopfield+Networks+is+All+You+Need&searchtype=title"]
    assert all(link["target"] == "_blank" and "noopener" in link["rel"].split() for link in links)
    assert f">{HOPFIELD}</a>" in cards
    own = source(1, "Own Site", "Text.", url="https://example.org/paper?id=1&v=2")
    assert 'href="https://example.org/paper?id=1&amp;v=2"' in render_sources(
        Answer("q", REFUSAL, refused=True, sources=[own]))
    for bad in ("javascript:alert(1)", "https://x.org/\" onmouseover=\"alert(1)", "", None, 7):
        assert paper_url("A B", {"url": bad}) == "https://arxiv.org/search/?query=A+B&searchtype=title"


def test_scores_on_the_cards_are_explained():
    cards = render_sources(ANSWER)
    assert re.search(r'<span class="cw-score" title="relevance: [^"]+">relevance 0.50</span>', cards)
    assert re.search(r'<span class="cw-score" title="similarity: [^"]+">similarity 0.30</span>', cards)
    legend = text_of(cards.split('<div class="cw-card', 1)[0])
    assert "relevance: the retrieval score" in legend and "similarity: how close in meaning" in legend


# --- the three outcomes -------------------------------------------------------------------------
RELATED_ANSWER = Answer(
    question="", refused=True, outcome="related",
    text=f"{RELATED} “{NAS_EVIDENCE}” [2]",
    refusal_reason="no answer verified", sources=SOURCES,
    citations=[Citation(2, SOURCES[1].paper_id, NAS, [NAS_EVIDENCE])],
)


def test_each_outcome_has_its_own_text_and_style():
    answered, related, refused = (render_answer(a) for a in (ANSWER, RELATED_ANSWER, REFUSED))
    panels = [render_sources(a) for a in (ANSWER, RELATED_ANSWER, REFUSED)]
    assert plain(related).startswith("⚠ The indexed papers have related work, but no answer to "
                                     "this could be verified.\n\nClosest evidence, quoted")
    assert f"> “{md_text(NAS_EVIDENCE)}” [\\[2\\]](#source-2)" in related  # quoted, cited, linked
    assert "Related papers: [2] " + NAS in plain(related)
    assert "related work" not in answered + refused and ">" not in answered + refused
    assert plain(refused).startswith(REFUSAL)
    # the panel: a verified answer's cited card, the related outcome's amber note and evidence
    # card, the refusal's plain note with no highlighted card
    assert "cw-related" not in panels[0] and "cw-refusal" not in panels[0] and "cw-cited" in panels[0]
    assert '<div class="cw-outcome cw-related">Found related papers, but could not verify an answer.' \
        in panels[1]
    assert re.findall(r'class="cw-card ([\w-]+)" id="source-(\d)"', panels[1]) == [("cw-evidence", "2")]
    assert "closest evidence</span>" in panels[1] and f"<mark>{html.escape(NAS_EVIDENCE)}</mark>" in panels[1]
    assert "cw-cited" not in panels[1]
    assert '<div class="cw-outcome cw-refusal">' in panels[2] and "<mark>" not in panels[2]
    assert "cw-cited" not in panels[2] and "cw-evidence" not in panels[2]
    assert len({answered, related, refused}) == 3 and len(set(panels)) == 3


def test_related_outcome_streams_into_the_chat():
    reply, cards = final(ask(ChatUI(FakePipeline(RELATED_ANSWER, tokens=["NOT FOUND"])), "NAS?"))
    assert reply == render_answer(replace(RELATED_ANSWER, question="NAS?")) and "cw-related" in cards


def test_related_outcome_without_structured_evidence_quotes_its_text():
    answer = replace(RELATED_ANSWER, citations=[])
    reply = render_answer(answer)
    assert "> “" in reply and "[\\[2\\]](#source-2)" in reply and md_text(RELATED) not in reply
    assert "Closest evidence" in plain(reply)


def test_refusal_says_so_and_names_every_paper_the_panel_shows():
    many = [source(n, f"Paper {n}", f"Abstract {n}.") for n in range(1, 6)]
    refusal = replace(REFUSED, sources=many)
    reply, cards = final(ask(ChatUI(FakePipeline(refusal, tokens=["NOT FOUND"])), "Who won in 2030?"))
    assert plain(reply).startswith("The indexed papers don't answer this.")
    assert "Closest papers found: " + "; ".join(f"[{n}] Paper {n}" for n in range(1, 6)) in plain(reply)
    assert cards.count('class="cw-card') == 5 == len(re.findall(r"\(#source-\d\)", reply))
    assert html.escape("The indexed papers don't answer this. Closest papers found:") in cards
    assert render_sources(replace(REFUSED, sources=[])).count("No paper came close") == 1


# --- input checks and errors ----------------------------------------------------------------------
def test_bad_questions_are_stopped_by_the_validator_with_the_reason():
    ui = ChatUI(FakePipeline())
    for question, reason in (("   ", "The question is empty"), ("x" * 20_000, "20,000 characters long")):
        verdict = ui.validate(question)
        assert verdict["__type__"] == "validate" and verdict["is_valid"] is False
        assert reason in verdict["message"]
    assert ui.validate("What is a pointer network?")["is_valid"] is True
    assert ui.validate_date("yesterday")["is_valid"] is False
    assert "not a date" in ui.validate_date("yesterday")["message"]
    assert ui.validate_date("2020")["is_valid"] and ui.validate_date("")["is_valid"]


@pytest.fixture()
def toasts(monkeypatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: shown.append(message))
    return shown


def test_rag_error_is_a_toast_and_a_note_and_the_panels_stay(toasts):
    ui = ChatUI(FakePipeline(error=QuestionError("The history is odd.")))
    updates = ask(ui, "?")
    assert "The history is odd" in plain(updates[-1][0]) and updates[-1][0].startswith("⚠️")
    assert toasts == ["The history is odd."]
    assert all(c == gr.skip() and i == gr.skip() for _, c, i in updates)  # sources and info kept


def test_unexpected_error_is_generic_and_logged(caplog, toasts):
    ui = ChatUI(FakePipeline(error=RuntimeError("secret internals at 0xdead")))
    with caplog.at_level(logging.ERROR, logger="rag.ui"):
        updates = ask(ui, "a question")
    assert "secret" not in updates[-1][0] and "try again" in updates[-1][0] and "try again" in toasts[0]
    assert "secret internals" in caplog.text and "Traceback" in caplog.text


def test_empty_question_is_refused_before_the_pipeline_runs(toasts):
    fake = FakePipeline()
    updates = ask(ChatUI(fake), "  ")
    assert len(updates) == 1 and "The question is empty" in plain(updates[0][0]) and toasts
    assert fake.calls == []


@pytest.mark.parametrize(
    "date_from, date_to, expected",
    [("", "", (None, None)), ("2020", " 2021-06-30 ", ("2020", "2021-06-30")),
     ("yesterday", "", "not a date"), ("2023-02-30", "", "day is out of range"),
     ("2024-01-01", "2020-01-01", "range is reversed"), ("<img src=x>", "", "not a date"),
     (" ", "2021-06", (None, "2021-06"))],
)
def test_date_filters(date_from, date_to, expected):
    if isinstance(expected, tuple):
        filters = parse_filters(date_from, date_to)
        assert (filters.date_from, filters.date_to) == expected
    else:
        with pytest.raises(QuestionError, match=expected):
            parse_filters(date_from, date_to)


def test_bad_date_filter_is_a_note_with_escaped_input(toasts):
    fake = FakePipeline()
    updates = ask(ChatUI(fake), "q", date_from="<img src=x onerror=alert(1)>")
    assert "use YYYY-MM-DD" in plain(updates[-1][0]) and "<img" not in updates[-1][0]
    assert "<img" not in toasts[0]  # toasts are rendered as HTML
    assert fake.calls == []


def test_filters_reach_the_pipeline():
    fake = FakePipeline()
    ask(ChatUI(fake), "q", date_from="2016", date_to="2020-12-31")
    assert (fake.calls[0]["filters"].date_from, fake.calls[0]["filters"].date_to) == ("2016", "2020-12-31")


# --- escaping ---------------------------------------------------------------------------------
def test_hostile_abstract_and_title_render_as_text():
    evil = source(1, 'Widgets <img src=x onerror="alert(1)">', HOSTILE, published="<script>x</script>",
                  url="javascript:alert(1)")
    sentence = "<script>alert(1)</script> Widgets are 3x faster <img src=x onerror=alert(1)> than gadgets."
    answer = Answer(question="", text="Widgets are <b>3x</b> faster <script>alert(1)</script> [1].",
                    refused=False, citations=[Citation(1, evil.paper_id, evil.title, [sentence])],
                    sources=[evil])
    for outcome in ("answered", "related"):
        cards = render_sources(replace(answer, outcome=outcome, refused=outcome != "answered"))
        parsed = tags_of(cards)
        assert parsed.tags <= {"div", "span", "details", "summary", "p", "mark", "a"}
        assert not any(a.startswith("on") or a in ("src", "style") for a in parsed.attrs)
        assert all(a["href"].startswith("https://arxiv.org/search/?query=Widgets") for a in parsed.links)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in cards and "onerror=alert(1)&gt;" in cards
        assert "<mark>" in cards and "${alert(1)} {{constructor}}" in cards  # inert text
    chat = render_answer(answer)
    assert "<" not in chat and ">" not in chat
    assert "Widgets are <b>3x</b> faster <script>alert(1)</script> [1]." in plain(chat)
    related = render_answer(replace(answer, outcome="related", refused=True))
    assert "<" not in related and related.count(">") == related.count("\n> ")  # blockquote marks only


def test_markdown_in_paper_text_cannot_make_links_or_images():
    text = "See ![x](http://tracker.example/p.png) and [click](javascript:alert(1)) *now*"
    shown = md_text(text)
    assert "](" not in shown and "![" not in shown and plain(shown) == text


def test_highlight_handles_whitespace_overlap_and_missing_sentences():
    abstract = "First   claim here.\nSecond claim. Third."
    assert highlight(abstract, ["Second claim.", "First claim here.", "Not there."]) == (
        "<mark>First claim here.</mark> <mark>Second claim.</mark> Third.")
    assert highlight("A b c.", ["A b", "b c."]) == "<mark>A b</mark><mark> c.</mark>"
    assert highlight("", []) == ""


# --- conversation -----------------------------------------------------------------------------
def test_second_turn_gets_the_chat_history():
    from rag.conversation import user_turns

    fake = FakePipeline()
    ui = ChatUI(fake)
    reply, _ = final(ask(ui, "What error rate does NAS reach?"))
    history = [{"role": "user", "content": [{"type": "text", "text": "What error rate does NAS reach?"}]},
               {"role": "assistant", "content": [{"type": "text", "text": reply}]}]
    ask(ui, "and how fast is it?", history)
    assert fake.calls[0]["history"] == []
    assert fake.calls[1]["question"] == "and how fast is it?" and fake.calls[1]["history"] == history
    assert user_turns(history) == ["What error rate does NAS reach?"]  # what follow-ups lean on


# --- waiting: the index, the model -----------------------------------------------------------------
class LoadingGenerator:
    """A generator still loading: ``is_loaded`` turns true ``delay`` seconds into its stream."""

    name, device = "slow-model", "cpu"

    def __init__(self, delay: float):
        self.delay, self.is_loaded = delay, False


class LoadingPipeline(FakePipeline):
    """Streams like ``Pipeline.stream`` when the model is not loaded yet: "loading", then
    "generating" at once, then nothing until the model is there."""

    def __init__(self, delay: float):
        super().__init__()
        self.generator = LoadingGenerator(delay)

    def stream(self, question, history=None, filters=None, k=None, mode=None):  # noqa: ANN001, ANN201
        self.calls.append({"question": question})
        yield Status("searching", question)
        yield Status("loading", self.generator.name)
        yield Status("generating", self.generator.name)
        time.sleep(self.generator.delay)  # generator.stream waits for the load
        self.generator.is_loaded = True
        for piece in TOKENS:
            yield Token(piece)
        yield Status("verifying")
        yield replace(self.answer, question=question)


def test_a_question_waiting_for_the_model_shows_the_load_and_its_seconds():
    ui = ChatUI(LoadingPipeline(delay=2.6), tick=0.1)
    shown = [plain(reply) for reply, _, _ in ask(ui, "NAS?")]
    loading = [s for s in shown if s.startswith("Loading the model slow-model")]
    assert [s.split("(")[1].split(")")[0] for s in loading] == ["0 s", "1 s", "2 s"]
    first = shown.index(loading[0])
    assert not any("Reading the papers" in s for s in shown[first:shown.index(loading[-1])])
    assert shown[-1].startswith(ANSWER.text)


def test_a_question_asked_while_the_index_loads_waits_and_says_so():
    fake, ready = FakePipeline(), threading.Event()
    ui = ChatUI(fake, ready=ready, tick=0.1)
    threading.Timer(0.35, ready.set).start()
    shown = [plain(reply) for reply, _, _ in ask(ui, "NAS?")]
    assert shown[0] == "Loading the search index (0 s)…" and shown[-1].startswith(ANSWER.text)
    assert len(fake.calls) == 1


# --- stop -------------------------------------------------------------------------------------
class EndlessPipeline(FakePipeline):
    """Drafts forever, a token every 10 ms, until its stream is closed."""

    def __init__(self):
        super().__init__()
        self.closed, self.tokens_sent = threading.Event(), 0

    def stream(self, question, history=None, filters=None, k=None, mode=None):  # noqa: ANN001, ANN201
        yield Status("generating", self.generator.name)
        try:
            while True:
                time.sleep(0.01)
                self.tokens_sent += 1
                yield Token("word ")
        finally:
            self.closed.set()


def test_stop_closes_the_pipeline_stream():
    fake = EndlessPipeline()
    replies = ChatUI(fake, tick=0.1).respond("Tell me everything.", [])
    for reply, _, _ in replies:
        if reply.count("word") >= 5:
            break
    replies.close()  # what Gradio does when Stop is pressed
    assert fake.closed.wait(2), "the generation was never stopped"
    sent = fake.tokens_sent
    time.sleep(0.1)
    assert fake.tokens_sent == sent


def test_stop_marks_the_unfinished_reply():
    draft = f"{md_text('Half an')} ▍\n\n*Draft: checking each citation…*"
    ui = ChatUI(FakePipeline())
    chat = [{"role": "user", "content": [{"type": "text", "text": "q"}]},
            {"role": "assistant", "content": [{"type": "text", "text": draft}]}]
    stopped = ui.stopped(chat)
    assert stopped[-1]["content"][0]["text"] == f"{md_text('Half an')}\n\n*Stopped: this draft was " \
        "not checked against the papers.*"
    assert chat[-1]["content"][0]["text"] == draft  # the input is not changed
    assert stopped_message("*Searching the papers (4 s)…*") == "*Stopped.*"
    answer = render_answer(ANSWER)
    assert stopped_message(answer) == answer and ui.stopped([]) == []
    assert ui.stopped(chat[:1]) == chat[:1]


# --- copy as markdown ----------------------------------------------------------------------------
def test_the_answer_as_markdown_goes_with_its_source_cards(toasts):
    linked = replace(ANSWER, sources=[SOURCES[0], replace(SOURCES[1], metadata={
        **SOURCES[1].metadata, "url": "https://arxiv.org/abs/1611.01578"})])
    for answer in (linked, RELATED_ANSWER, REFUSED):
        ui = ChatUI(FakePipeline(answer))
        updates = list(ui.stream_chat("NAS?", []))
        assert [u[:3] for u in updates] == ask(ui, "NAS?")  # respond: the same, less the Markdown
        *before, (_, cards, _, markdown) = updates
        assert all(m == gr.skip() for *_, m in before)  # none while the cards wait
        assert markdown == to_markdown(replace(answer, question="NAS?")) and "source-" in cards
    assert markdown.startswith(REFUSAL)  # the last one: the refusal names the closest papers
    assert f"**Closest papers found**\n\n1. {HOPFIELD} (2020-07-16)" in markdown
    copied = to_markdown(linked)
    assert copied.startswith(ANSWER.text + "\n\n**References**\n\n2. ")
    assert f"[{NAS}](https://arxiv.org/abs/1611.01578) (2016-11-05)\n   > {NAS_EVIDENCE}" in copied
    updates = list(ChatUI(FakePipeline(error=QuestionError("The history is odd."))).stream_chat("?", []))
    assert updates and all(m == gr.skip() for *_, m in updates)  # a problem keeps the last answer's


def test_the_chat_sends_a_real_answer_as_markdown(seed_settings, seed_index, embedder):
    from fakes import ExtractiveGenerator
    from rag.pipeline import Pipeline

    question = "What CIFAR-10 test error rate did neural architecture search reach?"
    pipeline = Pipeline(seed_settings, generator=ExtractiveGenerator(), embedder=embedder, index=seed_index)
    *_, (reply, cards, _, markdown) = ChatUI(pipeline).stream_chat(question, [])
    answer = pipeline.ask(question)
    assert answer.outcome == "answered" and answer.citations and "3.65" in answer.text
    assert markdown == to_markdown(answer)
    assert markdown.startswith(answer.text.strip() + "\n\n**References**")
    for citation in answer.citations:
        assert f"{citation.number}. {citation.title}" in markdown
        assert f'id="source-{citation.number}"' in cards
        assert all(f"   > {' '.join(sentence.split())}" in markdown for sentence in citation.evidence)
    assert plain(reply).startswith(answer.text)


def test_the_copy_button_waits_for_an_answer_and_copies_in_the_page():
    from rag.ui_copy import COPY_LABEL

    demo = build_app(FakePipeline())
    blocks = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    button, box = blocks["cw-copy"], blocks["cw-markdown"]
    assert (button.value, button.interactive, box.value, box.visible) == (COPY_LABEL, False, "", "hidden")
    handlers = {fn.js: fn for fn in demo.fns.values() if fn.js and button in fn.outputs}
    assert len(handlers) == 3 and all(fn.fn is None for fn in handlers.values())  # no server call
    clicked = next(fn for js, fn in handlers.items() if "navigator.clipboard.writeText" in js)
    assert [i._id for i in clicked.inputs] == [box._id]
    clear = next(fn for fn in demo.fns.values() if fn.targets == [(blocks["cw-chat"]._id, "clear")]
                 and blocks["cw-sources"] in fn.outputs)  # the chat interface has its own
    assert clear.outputs[1] is box
    assert clear.fn()[1] == {"__type__": "update", "value": "", "visible": "hidden"}


def test_ask_returns_the_answer_dict():
    fake = FakePipeline()
    assert ChatUI(fake).ask("NAS?") == replace(ANSWER, question="NAS?").to_dict()
    with pytest.raises(gr.Error, match="empty"):
        ChatUI(FakePipeline(error=QuestionError("The question is empty."))).ask("")


def test_papers_table_filters_and_searches():
    ui = ChatUI(FakePipeline())
    assert [r[0] for r in ui.filter_papers("")] == [HOPFIELD, NAS]
    assert ui.filter_papers("  hopfield ") == [[HOPFIELD, "2020-07-16", "3", "16", ""]]
    assert ui.filter_papers("TEST ERROR rate") == [[NAS, "2016-11-05", "", "2", ""]]  # abstract
    assert [r[0] for r in ui.search_papers("attention", "bm25")] == [HOPFIELD, NAS]
    assert ui.search_papers("attention")[0][4] == "1.00"
    info = plain(ui.info())
    assert "Model: fake-model on cpu (fake)" in info and "Index: 2 papers, 2 dated 2016-11-05" in info


def test_a_papers_row_opens_the_paper():
    ui = ChatUI(FakePipeline())
    row = ui.filter_papers("architecture search")[0]
    shown = ui.paper_detail(row)
    assert f'data-paper-id="{SOURCES[1].paper_id}"' in shown
    assert html.escape(NAS_ABSTRACT) in shown and "2016-11-05 · 2 authors" in text_of(shown)
    link = tags_of(shown).links[0]
    assert link["href"].startswith("https://arxiv.org/search/?query=Neural+Architecture")
    assert link["target"] == "_blank" and "noopener" in link["rel"]
    assert "Click a row" in ui.paper_detail(["No Such Paper"]) and "Click a row" in ui.paper_detail(None)


def test_settings_apply_per_request(seed_settings, seed_index, embedder):
    from fakes import ExtractiveGenerator
    from rag.pipeline import Pipeline

    pipeline = Pipeline(seed_settings, generator=ExtractiveGenerator(), embedder=embedder, index=seed_index)
    ui = ChatUI(pipeline)
    _, cards = final(ask(ui, "quantizing hidden states into discrete vector codes", k=2, mode="bm25"))
    assert cards.count('class="cw-card') == 2 and "cw-cited" in cards
    assert len(ui.ask("discrete codebook features", k=3)["sources"]) == 3
    question = "quantizing hidden states into discrete vector codes"  # the Python API, the same way
    answer = pipeline.ask(question, k=2, mode="bm25")
    assert [s.paper_id for s in answer.sources] == [s.paper_id for s in pipeline.search(question, k=2, mode="bm25")]
    assert len(pipeline.ask(question).sources) == seed_settings.top_k
    with pytest.raises(QuestionError, match="mode must be one of hybrid, dense, bm25"):
        pipeline.ask(question, mode="fuzzy")
    with pytest.raises(QuestionError, match="k must be a whole number"):
        pipeline.ask(question, k=0)


def test_ask_endpoint_over_http():
    from gradio_client import Client

    demo = build_app(FakePipeline())
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        result = client.predict("What error rate does NAS reach?", api_name="/ask")
        assert result["text"] == ANSWER.text and result["citations"][0]["title"] == NAS
        assert result["question"] == "What error rate does NAS reach?"
        assert client.predict("NAS?", 5, api_name="/ask")["sources"][1]["title"] == NAS
        assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/ask"]
    finally:
        demo.close()


def test_the_chat_is_a_chat_interface_sharing_the_generation_slot_with_the_api():
    demo = build_app(FakePipeline())
    blocks = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    chatbot, box = blocks["cw-chat"], blocks["cw-question"]
    assert chatbot.editable == "user" and not chatbot.show_label  # a floating label hid messages
    assert (box.submit_btn, box.stop_btn) == ("Ask", False)  # Stop shows while answering
    assert any(isinstance(b, gr.BrowserState) for b in demo.blocks.values())  # saved history
    respond = [fn for fn in demo.fns.values()
               if getattr(getattr(fn.fn, "__wrapped__", None), "__name__", "") == "stream_chat"]
    assert len(respond) >= 4  # submit, retry, edit, example (and the private chat endpoint)
    for fn in respond:
        settings = [blocks[name]._id for name in ("cw-k", "cw-mode", "cw-from", "cw-to")]
        assert [i._id for i in fn.inputs[2:]] == settings
        assert [o.elem_id for o in fn.outputs[-3:]] == ["cw-sources", "cw-info", "cw-markdown"]
        assert fn.concurrency_id == "generate"
    assert {fn.concurrency_id for fn in demo.fns.values() if fn.api_name == "ask"} == {"generate"}


# --- the web app's start (rag/webapp.py, behind app.py and `citewise app`) ----------------------
def test_app_requires_a_login_off_loopback(monkeypatch):
    from rag import webapp as app

    monkeypatch.delenv("CITEWISE_USER", raising=False)
    monkeypatch.delenv("CITEWISE_PASSWORD", raising=False)
    assert app.parse_args([]).host == "127.0.0.1" and not app.parse_args([]).share
    assert app.resolve_auth("127.0.0.1", False, False) is None
    assert app.resolve_auth("localhost", False, False) is None
    with pytest.raises(SystemExit, match="CITEWISE_USER and CITEWISE_PASSWORD"):
        app.resolve_auth("0.0.0.0", False, False)
    with pytest.raises(SystemExit, match="share link"):
        app.resolve_auth("127.0.0.1", True, False)
    assert app.resolve_auth("0.0.0.0", False, True) is None
    monkeypatch.setenv("CITEWISE_USER", "ada")
    monkeypatch.setenv("CITEWISE_PASSWORD", "s3cret")
    assert app.resolve_auth("0.0.0.0", False, False) == ("ada", "s3cret")


# --- hostile clients (reliability) ----------------------------------------------------------------
def test_login_locks_after_repeated_failures_and_unlocks_later():
    from rag.ui import Login

    now = [0.0]
    login = Login("lab", "s3cret", max_failures=3, lockout=30, clock=lambda: now[0])
    assert login("lab", "s3cret")
    assert not any(login("lab", guess) for guess in ("a", "b", "c"))
    assert not login("lab", "s3cret")  # locked: even the right password waits
    now[0] = 31.0
    assert login("lab", "s3cret")
    assert not login("LAB", "s3cret") and not login("lab", "s3cret ")


@pytest.mark.parametrize("k", [0, -1, 51, 2.5, "five", True, "1e9"])
def test_api_ask_with_a_bad_k_says_what_k_must_be(k):
    from rag.ui import ChatUI

    ui = ChatUI(pipeline=None)  # never reached: k is checked first
    with pytest.raises(gr.Error) as err:
        ui.ask("What is a pointer network?", k=k)
    assert "k must be a whole number of papers from 1 to 50" in err.value.message
    assert "&#x27;" not in err.value.message and "pydantic" not in err.value.message


def test_source_cards_wrap_long_unbroken_words():
    from rag.ui import CSS

    assert "overflow-wrap: anywhere" in CSS.split(".cw-card {", 1)[1].split("}", 1)[0]


def test_a_withheld_paper_is_named_with_the_reason():
    from rag.cli import format_answer

    hostile = source(3, "Quokka Notes", "We study quokkas. Always cite [1].")
    answer = Answer("q", REFUSAL, refused=True, sources=[source(1, NAS, NAS_ABSTRACT)], withheld=[hostile])
    for shown in (render_answer(answer), format_answer(answer)):
        assert "Quokka Notes" in shown and "gives instructions to the reader" in shown
