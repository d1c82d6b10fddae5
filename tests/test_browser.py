"""The app in a real headless Chromium, fast: the real seed index, embedder, retrieval,
verification and Gradio server, with a deterministic generator in place of the model
(``PacedGenerator``: it copies the best evidence sentence, like ``fakes.ExtractiveGenerator``,
at a chosen pace, and can pretend to be still loading or to write forever).

Covers what a user sees: a bad question keeps the conversation and the text; citation links
jump to their source card; every paper title links out; a Papers row opens its abstract;
Stop stops the generation; Retry answers again; the model load counts its seconds. The same
flows with the real model are in ``test_app_e2e.py``.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from fakes import ExtractiveGenerator
from test_app_e2e import browser, chromium, serve  # noqa: F401 - browser, chromium: fixtures

pytestmark = pytest.mark.browser

QUESTION = "What CIFAR-10 test error rate did neural architecture search reach?"
WAIT_MS = 60_000


class PacedGenerator(ExtractiveGenerator):
    """``ExtractiveGenerator`` streamed a piece every ``pace`` seconds. ``endless`` keeps
    writing until the stream is closed; ``load_delay`` makes it report itself not loaded and
    wait that long on its first stream, as the real one does while the app loads it."""

    name, device = "paced-extractive", "cpu (test)"

    def __init__(self):
        super().__init__()
        self.reset()

    def reset(self) -> None:
        self.pace, self.endless, self.load_delay, self.is_loaded = 0.0, False, 0.0, True
        self.streams, self.closed = 0, threading.Event()

    def stream(self, messages: list[dict], max_new_tokens: int):  # noqa: ANN201
        self.streams += 1
        if not self.is_loaded:
            time.sleep(self.load_delay)
            self.is_loaded = True
        try:
            for piece in super().stream(messages, max_new_tokens):
                time.sleep(self.pace)
                yield piece
            while self.endless:
                time.sleep(self.pace)
                yield "and more "
        finally:
            self.closed.set()


@pytest.fixture(scope="module")
def app(seed_settings, seed_index, embedder):
    """The real app on the seed index, with the paced generator."""
    from rag.pipeline import Pipeline

    generator = PacedGenerator()
    pipeline = Pipeline(seed_settings, generator=generator, embedder=embedder, index=seed_index)
    pipeline.warm_up(model=False)
    demo = serve(pipeline)
    yield SimpleNamespace(url=demo.local_url, pipeline=pipeline, generator=generator)
    demo.close()


@pytest.fixture()
def page(app, browser):
    """The app freshly opened (no saved conversations), with outside requests, new tabs,
    dialogs and script errors recorded."""
    app.generator.reset()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.seen = SimpleNamespace(outside=[], dialogs=[], errors=[])
    page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
            else page.seen.outside.append(r.url))
    page.on("dialog", lambda d: (page.seen.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: page.seen.errors.append(str(e)))
    page.goto(app.url, wait_until="load")
    page.locator("#cw-question textarea").wait_for()
    yield page
    assert not page.seen.outside and not page.seen.errors and not page.seen.dialogs, page.seen
    assert len(context.pages) == 1  # nothing opened a tab
    context.close()


def submit(page, question: str) -> None:  # noqa: ANN001
    box = page.locator("#cw-question textarea")
    box.fill(question)
    box.press("Enter")


def answered(page, count: int = 1) -> str:  # noqa: ANN001
    """Wait until the ``count``-th reply is a finished answer (or refusal); the chat's text."""
    page.wait_for_function("""n => {
        const replies = document.querySelectorAll('#cw-chat .bot .message-content');
        const last = replies.length >= n ? replies[replies.length - 1].textContent : '';
        return /Sources:|Closest papers found|Related papers/.test(last) && !last.includes('▍');
    }""", arg=count, timeout=WAIT_MS)
    return page.locator("#cw-chat").inner_text()


def error_pills(page) -> list[str]:  # noqa: ANN001
    """Gradio's red "Error" status pills on any component (where each is, in HTML)."""
    pills = page.get_by_text("Error", exact=True).filter(visible=True)
    return [pills.nth(i).evaluate("e => e.parentElement.parentElement.outerHTML.slice(0, 400)")
            for i in range(pills.count())]


def test_a_bad_question_keeps_the_conversation_and_the_text(app, page):
    submit(page, QUESTION)
    chat = answered(page)
    sources = page.locator("#cw-sources").inner_html()
    assert "3.65" in chat
    box = page.locator("#cw-question textarea")
    for typed, reason in (("   ", "The question is empty"),
                          ("x" * 20_000, "20,000 characters long")):
        submit(page, typed)
        page.get_by_text(reason).wait_for(timeout=WAIT_MS)
        assert box.input_value() == typed  # the text box keeps the text
        assert page.locator("#cw-chat").inner_text() == chat  # the conversation is all there
        assert page.locator("#cw-sources").inner_html() == sources
        assert error_pills(page) == []
    assert app.generator.streams == 1  # nothing bad reached the pipeline
    submit(page, "and what about the parameter count?")  # a good question clears the message
    answered(page, 2)
    assert page.get_by_text("20,000 characters long").count() == 0
    assert page.locator("#cw-chat .message-row .user").count() == 2


def test_a_citation_link_scrolls_to_and_highlights_its_card(page):
    page.set_viewport_size({"width": 1280, "height": 600})
    submit(page, QUESTION)
    answered(page)
    card = page.locator("#source-1")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.locator("#cw-chat").evaluate("chat => chat.scrollIntoView({block: 'end'})")
    assert "cw-focus" not in card.get_attribute("class")
    link = page.locator('#cw-chat .bot a[href="#source-1"]').first
    assert link.inner_text() == "[1]"
    link.click()
    page.wait_for_function("() => document.getElementById('source-1').classList.contains('cw-focus')")
    page.wait_for_function("""() => {  // scrolled into view
        const r = document.getElementById('source-1').getBoundingClientRect();
        return r.top >= 0 && r.bottom <= window.innerHeight; }""", timeout=5000)
    assert card.locator("details").get_attribute("open") is not None
    assert "#source" not in page.url  # handled in the page: no navigation, no new tab


def test_every_card_title_links_to_its_paper_in_a_new_tab(page):
    submit(page, QUESTION)
    answered(page)
    titles = page.locator("#cw-sources .cw-card a.cw-title")
    assert titles.count() == page.locator("#cw-sources .cw-card").count() > 0
    for i in range(titles.count()):
        link = titles.nth(i)
        assert link.get_attribute("href").startswith("https://arxiv.org/search/?query=")
        assert link.get_attribute("target") == "_blank"
        assert "noopener" in link.get_attribute("rel").split()
    assert page.locator("#cw-sources .cw-card [title^='relevance:']").count() == titles.count()
    assert page.locator("#cw-sources .cw-legend").inner_text().startswith("relevance: ")


def test_a_papers_row_opens_the_paper(app, page):
    page.get_by_role("tab", name="Papers").click()
    paper = next(p for p in app.pipeline.index.papers() if "Neural Architecture Search" in p.title)
    page.get_by_label("Find papers").fill("architecture search")  # the table shows rows in view
    page.get_by_role("button", name="Filter by text").click()
    page.locator("#cw-papers").get_by_text(paper.title, exact=True).first.click()
    detail = page.locator("#cw-paper .cw-card")
    detail.wait_for(timeout=WAIT_MS)
    assert paper.abstract.split(".")[0] in detail.inner_text()
    link = detail.locator("a.cw-title")
    assert link.inner_text() == paper.title and link.get_attribute("target") == "_blank"


def test_stop_stops_the_generation_and_says_so(app, page):
    app.generator.pace, app.generator.endless = 0.05, True
    submit(page, QUESTION)
    page.wait_for_function("() => document.querySelector('#cw-chat').textContent.includes('and more')",
                           timeout=WAIT_MS)
    page.get_by_role("button", name="Stop").click()
    assert app.generator.closed.wait(10), "the generation went on after Stop"
    page.get_by_text("Stopped: this draft was not checked against the papers.").wait_for(timeout=WAIT_MS)
    page.get_by_role("button", name="Ask").wait_for(timeout=WAIT_MS)
    assert error_pills(page) == []
    app.generator.endless = False  # the next question is answered as usual
    submit(page, QUESTION)
    assert "3.65" in answered(page, 2)
    assert "Stopped" in page.locator("#cw-chat .bot").first.inner_text()  # still there


def test_retry_answers_the_last_question_again(app, page):
    submit(page, QUESTION)
    answered(page)
    app.generator.pace = 0.02  # slow enough to see the old answer go
    page.locator("#cw-chat").get_by_role("button", name="Retry").last.click()
    page.wait_for_function("() => !document.querySelector('#cw-chat').textContent.includes('Sources:')",
                           timeout=WAIT_MS, polling=20)
    chat = answered(page)
    assert app.generator.streams == 2
    assert chat.count(QUESTION) == 1 and page.locator("#cw-chat .bot .message-content").count() == 1


def test_a_question_waiting_for_the_model_counts_the_seconds(app, page):
    app.generator.is_loaded, app.generator.load_delay = False, 3.5
    submit(page, QUESTION)
    page.get_by_text("Loading the model paced-extractive (2 s)").wait_for(timeout=WAIT_MS)
    assert "3.65" in answered(page)


def test_the_examples_and_the_chat_are_fully_visible(page):
    example = page.locator("#cw-chat").get_by_role("button", name="Which simple training principle")
    box = example.evaluate("e => [e.scrollWidth, e.clientWidth, e.scrollHeight, e.clientHeight]")
    assert box[0] <= box[1] + 1 and box[2] <= box[3] + 1, box  # nothing cut off
    assert "what benefits were reported?" in example.inner_text()
    assert page.locator("#cw-chat [data-testid='block-label']").filter(visible=True).count() == 0
