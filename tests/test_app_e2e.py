"""The real app end to end: the seed index, the bundled embedder and model, a real server,
``gradio_client`` on the ``/ask`` API, and a real headless Chromium driving the page.

One app (one model load) is shared by every test here. Slow on a 2-core CPU: the model
loads in about a minute and each answer takes 20-60 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import free_port
from rag.config import PROJECT_ROOT, Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ANSWER_TIMEOUT_MS = 15 * 60 * 1000  # a shared 2-core CPU can be very slow
NUMERIC = "q050"  # neural architecture search: "a test error rate of 3.65" on CIFAR-10
HOSTILE = [  # hostile text in a title and an abstract; each payload would set window.__xss
    {"title": 'HostileNet <img src=x onerror="window.__xss=1">', "published": "2024-01-02",
     "upvotes": 7, "n_authors": 3,
     "abstract": "We present HostileNet, a classifier for widgets. HostileNet reaches 97.3% "
                 "accuracy on the widget benchmark. <script>window.__xss=2</script> "
                 "<img src=x onerror=\"window.__xss=3\"> ${window.__xss=4} "
                 "{{constructor.constructor('window.__xss=5')()}}"},
    {"title": "Gadget Graphs", "abstract": "We study gadget graphs. Gadget graphs have no widgets."},
    {"title": "Sprocket Scaling Laws", "abstract": "Sprockets scale with data. Loss falls as a power law."},
]


def eval_question(qid: str) -> dict:
    for line in (PROJECT_ROOT / "eval" / "questions.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        if item["id"] == qid:
            return item
    raise LookupError(qid)


def gold_numbers(item: dict) -> list[str]:
    """The numbers of a gold answer ("Up to 92% ... at 39 frames" -> ["92", "39"])."""
    return re.findall(r"\d+(?:\.\d+)?", item["answer"])


def serve(pipeline, auth: tuple[str, str] | None = None):  # noqa: ANN001, ANN201
    """The app's own server for ``pipeline`` (``rag.webapp``: the chat, the papers and the
    REST API on one port) on a free localhost port; ``.url``, ``.close()``."""
    import threading

    from rag.webapp import start_server

    ready = threading.Event()
    ready.set()
    return start_server(pipeline, ready, auth, "127.0.0.1", 0)


@pytest.fixture(scope="module")
def live_app(seed_settings, seed_index, embedder):
    """The real app on the seed index with the bundled model, on a free localhost port."""
    from rag.generation import TransformersGenerator
    from rag.pipeline import Pipeline

    pipeline = Pipeline(seed_settings, generator=TransformersGenerator(seed_settings),
                        embedder=embedder, index=seed_index)
    pipeline.warm_up()
    demo = serve(pipeline)
    yield SimpleNamespace(url=demo.url, pipeline=pipeline)
    demo.close()


def small_app(folder: Path, papers: list[dict], embedder):  # noqa: ANN001, ANN201
    """The real app on a tiny index of ``papers`` in ``folder`` (the bundled model, shared
    with every other app of the process once loaded); yields it, then closes it."""
    from rag.generation import TransformersGenerator
    from rag.ingest import ingest
    from rag.pipeline import Pipeline

    corpus = folder / "papers.jsonl"
    corpus.write_text("".join(json.dumps(p) + "\n" for p in papers), encoding="utf-8")
    settings = Settings(index_dir=folder / "index", corpus=[corpus], top_k=3)
    ingest(settings, progress=False, embedder=embedder)
    pipeline = Pipeline(settings, generator=TransformersGenerator(settings), embedder=embedder)
    demo = serve(pipeline)
    yield SimpleNamespace(url=demo.url, pipeline=pipeline)
    demo.close()


@pytest.fixture(scope="module")
def hostile_app(live_app, tmp_path_factory, embedder):
    """The real app on a tiny index whose papers carry script payloads (same loaded model)."""
    yield from small_app(tmp_path_factory.mktemp("hostile"), HOSTILE, embedder)


@pytest.fixture()
def growing_app(live_app, tmp_path_factory, embedder):
    """The real app on a tiny index that a test adds papers to while it runs."""
    yield from small_app(tmp_path_factory.mktemp("growing"), HOSTILE[1:], embedder)


@pytest.mark.e2e
def test_ask_api_returns_a_real_cited_answer(live_app):
    from gradio_client import Client

    item = eval_question(NUMERIC)
    result = Client(live_app.url, verbose=False).predict(item["question"], api_name="/ask")
    assert not result["refused"], result
    assert {c["title"] for c in result["citations"]} == set(item["gold_titles"]), result
    assert any(n in result["text"] for n in gold_numbers(item)) and "[1]" in result["text"], result
    assert result["citations"][0]["supporting_sentence"] in result["sources"][0]["abstract"]
    assert result["model"] == live_app.pipeline.generator.name and result["timings"]["total"] > 0



NEW_PAPER = {"title": "Quokka Foraging Networks", "published": "2024-03-01", "upvotes": 4, "n_authors": 2,
             "abstract": "We present Quokka Foraging Networks, a model of how quokkas choose leaves. "
                         "Quokka Foraging Networks predict the chosen leaf with 81.4% accuracy on the "
                         "Rottnest Island foraging benchmark."}


@pytest.mark.e2e
def test_the_running_app_answers_about_a_paper_ingested_meanwhile(growing_app, tmp_path):
    """``python -m rag ingest FILE`` in another process while the app runs: the app's next
    question finds the new paper (no restart), as a fresh CLI search would."""
    import sys

    from gradio_client import Client

    question = "How accurately do Quokka Foraging Networks predict the chosen leaf?"
    client = Client(growing_app.url, verbose=False)
    before = client.predict(question, api_name="/ask")
    assert NEW_PAPER["title"] not in {s["title"] for s in before["sources"]}, before
    corpus = tmp_path / "quokka.jsonl"
    corpus.write_text(json.dumps(NEW_PAPER) + "\n", encoding="utf-8")
    env = {**os.environ, "RAG_INDEX_DIR": str(growing_app.pipeline.settings.index_dir), "RAG_CORPUS": "[]"}
    done = subprocess.run([sys.executable, "-m", "rag", "ingest", "--quiet", str(corpus)], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    after = client.predict(question, api_name="/ask")
    assert after["sources"] and after["sources"][0]["title"] == NEW_PAPER["title"], after
    assert after["outcome"] != "not_found", after
    if after["outcome"] == "answered":
        assert "81.4" in after["text"] and NEW_PAPER["title"] in {c["title"] for c in after["citations"]}

# --- the browser --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium (installed here when missing and running as root)."""
    if not Path(CHROMIUM).exists():
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip(f"{CHROMIUM} is missing; install it with: apt-get install -y chromium")
        done = subprocess.run("apt-get update && apt-get install -y chromium", shell=True,
                              capture_output=True, text=True, timeout=900)
        if done.returncode or not Path(CHROMIUM).exists():
            pytest.skip(f"installing chromium failed: {(done.stderr or done.stdout)[-300:]}")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser):
    """A page that records outside requests, dialogs and script errors."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.seen = SimpleNamespace(outside=[], dialogs=[], errors=[])

    def on_request(request) -> None:  # noqa: ANN001
        if not request.url.startswith(("http://127.0.0.1", "data:", "blob:")):
            page.seen.outside.append(request.url)

    page.on("request", on_request)
    page.on("dialog", lambda d: (page.seen.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: page.seen.errors.append(str(e)))
    yield page
    context.close()


def watch_for_drafts(page) -> None:  # noqa: ANN001
    """Note in ``window.__sawDraft`` whether a streamed draft is ever shown in the chat."""
    page.evaluate("""() => {
        window.__sawDraft = false;
        const chat = document.querySelector('#cw-chat');
        new MutationObserver(() => {
            if (chat.textContent.includes('Draft: checking')) window.__sawDraft = true;
        }).observe(chat, {subtree: true, childList: true, characterData: true});
    }""")


def ask_in_page(page, url: str, question: str | None = None) -> None:  # noqa: ANN001
    """Open the app, ask (typing ``question`` or clicking the first example), await the answer."""
    page.goto(url, wait_until="load")
    box = page.locator("#cw-question textarea")
    box.wait_for()
    watch_for_drafts(page)
    if question:
        box.fill(question)
        page.get_by_role("button", name="Ask").click()
    else:  # an example in the empty chat is asked at once
        page.locator("#cw-chat").get_by_role("button", name="What CIFAR-10 test error rate").click()
    page.locator("#cw-sources .cw-card").first.wait_for(timeout=ANSWER_TIMEOUT_MS)


@pytest.mark.browser
def test_browser_streams_a_cited_answer_with_highlighted_evidence(live_app, page, tmp_path):
    item = eval_question(NUMERIC)
    ask_in_page(page, live_app.url)  # clicks the first example, which is this question
    assert page.locator("#cw-chat").inner_text().count(item["question"]) == 1
    cited = page.locator("#cw-sources .cw-card.cw-cited")
    cited.first.locator("mark").first.wait_for()
    assert item["gold_titles"][0] in cited.first.inner_text()
    marked = " ".join(cited.first.locator("mark").all_inner_texts())  # every highlighted sentence
    assert all(n in marked for n in gold_numbers(item))
    reply = page.locator("#cw-chat").inner_text()
    assert any(n in reply for n in gold_numbers(item)), reply
    assert "Sources: [1]" in reply and "Draft" not in reply and "Checking" not in reply
    assert page.evaluate("window.__sawDraft"), "the draft was never streamed into the chat"
    link = page.locator('#cw-chat .bot a[href="#source-1"]').first  # [1] links to its card
    link.click()
    page.wait_for_function("() => document.getElementById('source-1').classList.contains('cw-focus')")
    assert not page.seen.outside and not page.seen.errors and not page.seen.dialogs, page.seen
    page.screenshot(path=str(tmp_path / "app.png"))
    if os.environ.get("CITEWISE_SCREENSHOT") == "1":
        (PROJECT_ROOT / "docs").mkdir(exist_ok=True)
        page.screenshot(path=str(PROJECT_ROOT / "docs" / "screenshot.png"))


@pytest.mark.browser
def test_browser_shows_hostile_papers_as_text(hostile_app, page, tmp_path):
    ask_in_page(page, hostile_app.url, "What accuracy does HostileNet reach on the widget benchmark?")
    card = page.locator("#cw-sources .cw-card", has_text="HostileNet").first
    text = card.text_content()
    assert 'HostileNet <img src=x onerror="window.__xss=1">' in text
    assert "<script>window.__xss=2</script>" in text and "${window.__xss=4}" in text
    page.screenshot(path=str(tmp_path / "hostile-chat.png"))
    page.get_by_role("tab", name="Papers").click()
    table = page.locator("#cw-papers", has_text="HostileNet")
    table.wait_for()
    assert 'HostileNet <img src=x onerror="window.__xss=1">' in table.inner_text()
    page.screenshot(path=str(tmp_path / "hostile-papers.png"))
    assert page.evaluate("window.__xss") is None
    assert page.locator("#cw-sources img, #cw-sources script, #cw-papers img").count() == 0
    assert not page.seen.dialogs and not page.seen.errors and not page.seen.outside, page.seen


@pytest.mark.slow
@pytest.mark.browser
def test_browser_stop_and_retry_with_the_real_model(live_app, page):
    """Stop cuts the real model's draft short; Retry then answers the question in full."""
    item = eval_question(NUMERIC)
    page.goto(live_app.url, wait_until="load")
    box = page.locator("#cw-question textarea")
    box.wait_for()
    watch_for_drafts(page)
    box.fill(item["question"])
    box.press("Enter")
    page.wait_for_function("() => window.__sawDraft", timeout=ANSWER_TIMEOUT_MS, polling=50)
    page.get_by_role("button", name="Stop").click()
    page.get_by_text("Stopped: this draft was not checked against the papers.").wait_for(timeout=60_000)
    page.get_by_role("button", name="Ask").wait_for(timeout=60_000)
    lock = live_app.pipeline.generator._loaded().lock  # free again once the generation stopped
    assert lock.acquire(timeout=30), "the model kept generating after Stop"
    lock.release()
    page.locator("#cw-chat").get_by_role("button", name="Retry").last.click()
    page.wait_for_function("""() => {  // the retried question's answer, finished
        const replies = document.querySelectorAll('#cw-chat .bot .message-content');
        const last = replies.length ? replies[replies.length - 1].textContent : '';
        return /Sources:|Closest papers found|Related papers/.test(last) && !last.includes('▍');
    }""", timeout=ANSWER_TIMEOUT_MS)
    reply = page.locator("#cw-chat").inner_text()
    assert any(n in reply for n in gold_numbers(item)) and "Stopped" not in reply, reply
    assert reply.count(item["question"]) == 1
    assert not page.seen.outside and not page.seen.errors and not page.seen.dialogs, page.seen
