"""The app in a real headless Chromium, fast: the real seed index, embedder, retrieval,
verification and Gradio server, with a deterministic generator in place of the model
(``PacedGenerator``: it copies the best evidence sentence, like ``fakes.ExtractiveGenerator``,
at a chosen pace, and can pretend to be still loading or to write forever).

Covers what a user sees: a bad question keeps the conversation and the text; citation links
jump to their source card; every paper title links out; a Papers row opens its abstract;
Stop stops the generation; Retry answers again; the model load counts its seconds; Copy as
Markdown puts the answer and its references on the clipboard, or in view where the browser
refuses the clipboard. The same flows with the real model are in ``test_app_e2e.py``.
"""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest

from fakes import ExtractiveGenerator
from test_app_e2e import browser, chromium, serve  # noqa: F401 - browser, chromium: fixtures

pytestmark = pytest.mark.browser

QUESTION = "What CIFAR-10 test error rate did neural architecture search reach?"
WAIT_MS = 60_000
LINKED = [  # papers with their own links (the seed listings have none)
    {"title": "Neural Architecture Search with Reinforcement Learning", "published": "2016-11-05",
     "url": "https://arxiv.org/abs/1611.01578",
     "abstract": "Neural networks are powerful and flexible models, yet still hard to design. We use a "
                 "recurrent network to generate the model descriptions of neural networks and train "
                 "it with reinforcement learning. Our CIFAR-10 model achieves a test error rate of "
                 "3.65, which is 0.09 percent better and 1.05x faster than the previous "
                 "state-of-the-art model."},
    {"title": "Pointer Networks", "published": "2015-06-09", "url": "https://arxiv.org/abs/1506.03134",
     "abstract": "We introduce a new neural architecture to learn the conditional probability of an "
                 "output sequence with elements that are discrete tokens corresponding to positions "
                 "in an input sequence. Pointer networks solve planar convex hulls and the planar "
                 "Travelling Salesman Problem."},
    {"title": "Gadget Graphs", "abstract": "We study gadget graphs. Gadget graphs have no widgets."},
]


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
    yield SimpleNamespace(url=demo.url, pipeline=pipeline, generator=generator)
    demo.close()


@pytest.fixture(scope="module")
def linked_app(tmp_path_factory, embedder):
    """The app on a tiny index of papers that carry their own links, with the paced generator."""
    from rag.config import Settings
    from rag.ingest import ingest
    from rag.pipeline import Pipeline

    folder = tmp_path_factory.mktemp("linked")
    (folder / "papers.jsonl").write_text("".join(json.dumps(p) + "\n" for p in LINKED), encoding="utf-8")
    settings = Settings(index_dir=folder / "index", corpus=[folder / "papers.jsonl"], top_k=3)
    ingest(settings, progress=False, embedder=embedder)
    generator = PacedGenerator()
    pipeline = Pipeline(settings, generator=generator, embedder=embedder)
    pipeline.warm_up(model=False)
    demo = serve(pipeline)
    yield SimpleNamespace(url=demo.url, pipeline=pipeline, generator=generator)
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


def copied(page, button) -> str:  # noqa: ANN001
    """Click Copy as Markdown: the clipboard's text once the button said it was copied."""
    button.click()
    page.wait_for_function("b => b.textContent.includes('Copied')", arg=button.element_handle(),
                           timeout=5000)
    return page.evaluate("navigator.clipboard.readText()")


def test_copy_as_markdown_copies_the_answer_with_its_references(linked_app, page):
    from rag.export import to_markdown
    from rag.ui import parse_filters

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(linked_app.url, wait_until="load")
    button = page.locator("#cw-copy")
    assert button.inner_text() == "Copy as Markdown" and button.is_disabled()  # nothing to copy yet
    linked_app.generator.reset()
    submit(page, QUESTION)
    answered(page)
    answer = linked_app.pipeline.ask(QUESTION)
    text = copied(page, button)
    assert answer.outcome == "answered" and text == to_markdown(answer)
    assert text.startswith(answer.text.strip() + "\n\n**References**\n\n1. ")
    for citation in answer.citations:
        paper = next(p for p in LINKED if p["title"] == citation.title)
        assert f"[{paper['title']}]({paper['url']})" in text
    page.wait_for_function("b => b.textContent.trim() === 'Copy as Markdown'", arg=button.element_handle(),
                           timeout=5000)  # the confirmation lasts a moment
    # Retry with papers up to 2016 only: the new answer, a refusal, is what is copied now
    page.get_by_role("button", name="Settings").first.click()  # the footer has a Settings too
    page.get_by_label("Published to").fill("2016-01-01")
    page.locator("#cw-chat").get_by_role("button", name="Retry").last.click()
    page.wait_for_function("""() => {
        const last = [...document.querySelectorAll('#cw-chat .bot .message-content')].pop();
        return last && last.textContent.includes('Closest papers found'); }""", timeout=WAIT_MS)
    refusal = linked_app.pipeline.ask(QUESTION, filters=parse_filters("", "2016-01-01"))
    text = copied(page, button)
    assert refusal.outcome == "not_found" and text == to_markdown(refusal)
    assert text.startswith(refusal.text.strip() + "\n\n**Closest papers found**\n\n1. ")
    assert "[Pointer Networks](https://arxiv.org/abs/1506.03134)" in text
    assert page.locator("#cw-markdown").is_hidden()  # the box is only for a refused clipboard


def test_copy_as_markdown_shows_the_markdown_where_the_browser_refuses_the_clipboard(app, page):
    from rag.export import to_markdown

    # the app embedded in a page that does not let it use the clipboard
    page.set_content(f"""<iframe src="{app.url}" allow="clipboard-write 'none'"
                     style="width: 1260px; height: 1400px"></iframe>""")
    frame = page.locator("iframe").element_handle().content_frame()
    frame.locator("#cw-question textarea").wait_for()
    submit(frame, QUESTION)
    answered(frame)
    button, box = frame.locator("#cw-copy"), frame.locator("#cw-markdown")
    assert box.is_hidden()
    button.click()
    box.wait_for(state="visible", timeout=5000)
    assert box.locator("textarea").input_value() == to_markdown(app.pipeline.ask(QUESTION))
    frame.wait_for_function("""() => {  // selected, ready to copy by hand
        const t = document.querySelector('#cw-markdown textarea');
        return document.activeElement === t && t.selectionStart === 0 && t.selectionEnd === t.value.length;
    }""", timeout=5000)
    assert "did not allow copying" in box.inner_text() and "Copied" not in button.inner_text()
