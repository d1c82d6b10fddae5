"""The REST API over real HTTP: the app's own server (``rag.webapp``: FastAPI with the Gradio
app mounted) on the real seed index, embedder and retrieval, asked with ``httpx``.

The fast tests answer with ``fakes.ExtractiveGenerator`` (it copies the best evidence
sentence); ``test_the_bundled_model_streams_a_cited_answer`` streams one with the real model.
The README's REST snippet is run verbatim against a live server in
``test_the_readme_rest_snippet_runs_as_written``.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import httpx
import pytest

from fakes import ExtractiveGenerator
from rag.config import PROJECT_ROOT
from test_app_e2e import serve

ANSWERABLE = "What CIFAR-10 test error rate did neural architecture search reach?"
UNANSWERABLE = "How long should sourdough bread be proofed before baking?"
LOGIN = ("lab", "s3cret-pass")


@pytest.fixture(scope="module")
def pipeline(seed_settings, seed_index, embedder):
    from rag.pipeline import Pipeline

    p = Pipeline(seed_settings, generator=ExtractiveGenerator(), embedder=embedder, index=seed_index)
    p.warm_up(model=False)
    return p


@pytest.fixture(scope="module")
def server(pipeline):
    running = serve(pipeline)
    yield running
    running.close()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def events(response: httpx.Response) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a server-sent event stream."""
    out, name, data = [], None, []
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            data.append(line[len("data: "):])
        elif not line and name:
            out.append((name, json.loads("\n".join(data))))
            name, data = None, []
    return out


def test_the_openapi_document_lists_every_endpoint_and_the_docs_page_serves(client):
    spec = client.get("/api/openapi.json").json()
    assert {"/api/ask", "/api/search", "/api/papers", "/api/papers/{paper_id}"} <= set(spec["paths"])
    ask = spec["paths"]["/api/ask"]["post"]
    assert "text/event-stream" in ask["responses"]["200"]["content"]
    assert "question" in spec["components"]["schemas"]["AskRequest"]["required"]
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_the_chat_app_is_served_on_the_same_port(client):
    page, config = client.get("/"), client.get("/config")
    assert page.status_code == 200 and "gradio" in page.text.lower()
    assert config.json()["title"] == "citewise"
    assert "/ask" in client.get("/gradio_api/info").json()["named_endpoints"]  # Gradio's own API too


def test_search_returns_the_matching_papers_with_scores(client):
    found = client.get("/api/search", params={"q": "pointer networks", "k": 3})
    assert found.status_code == 200
    papers = found.json()
    assert 1 <= len(papers) <= 3 and papers[0]["title"] == "Pointer Networks"
    assert {"number", "paper_id", "title", "score", "text"} <= set(papers[0])


@pytest.mark.parametrize(("params", "says"), [
    ({"q": "  "}, "The query is empty"),
    ({"q": "pointer networks", "k": 0}, "greater than or equal to 1"),
    ({"q": "pointer networks", "mode": "fuzzy"}, "hybrid"),
    ({"q": "pointer networks", "date_from": "2021-02-30"}, "YYYY-MM-DD"),
    ({}, "Field required"),
])
def test_a_bad_search_is_a_422_that_says_what_to_fix(client, params, says):
    response = client.get("/api/search", params=params)
    assert response.status_code == 422
    assert says in json.dumps(response.json()["detail"])


def test_papers_are_listed_filtered_paged_and_fetched_one_by_one(client, seed_index):
    everything = client.get("/api/papers", params={"limit": 1000}).json()
    assert everything["total"] == len(seed_index.papers()) == len(everything["papers"])
    page = client.get("/api/papers", params={"offset": 5, "limit": 3}).json()
    assert [p["paper_id"] for p in page["papers"]] == [p["paper_id"] for p in everything["papers"][5:8]]
    pointer = client.get("/api/papers", params={"contains": "POINTER NET"}).json()
    assert "Pointer Networks" in [p["title"] for p in pointer["papers"]]
    one = pointer["papers"][0]
    fetched = client.get(f"/api/papers/{one['paper_id']}")
    assert fetched.status_code == 200 and fetched.json()["abstract"] == one["abstract"]
    missing = client.get("/api/papers/no-such-paper")
    assert missing.status_code == 404 and "GET /api/papers" in missing.json()["detail"]


def test_ask_streams_status_tokens_then_the_verified_answer(client):
    with client.stream("POST", "/api/ask", json={"question": ANSWERABLE}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        seen = events(response)
    names = [name for name, _ in seen]
    assert names[0] == "status" and names[-1] == "answer" and "token" in names
    assert [d["stage"] for n, d in seen if n == "status"] == ["searching", "generating", "verifying"]
    answer = seen[-1][1]
    draft = "".join(d["text"] for n, d in seen if n == "token")
    assert answer["raw_text"] == draft.strip()
    assert not answer["refused"] and "3.65" in answer["text"]
    cited = answer["citations"][0]
    assert cited["supporting_sentence"] and cited["title"] in [s["title"] for s in answer["sources"]]


def test_ask_without_streaming_returns_json_and_refuses_what_the_papers_do_not_say(client):
    answered = client.post("/api/ask", json={"question": ANSWERABLE, "stream": False, "k": 3})
    assert answered.status_code == 200 and not answered.json()["refused"]
    assert len(answered.json()["sources"]) <= 3
    refused = client.post("/api/ask", json={"question": UNANSWERABLE, "stream": False}).json()
    assert refused["refused"] and refused["citations"] == []


def test_a_follow_up_uses_the_history(client):
    first = client.post("/api/ask", json={"question": ANSWERABLE, "stream": False}).json()
    history = [{"role": "user", "content": ANSWERABLE}, {"role": "assistant", "content": first["text"]}]
    follow = client.post("/api/ask", json={"question": "Which paper reports it?", "history": history,
                                           "stream": False}).json()
    assert follow["standalone_question"] != "Which paper reports it?"


@pytest.mark.parametrize(("body", "says"), [
    ({"question": ""}, "The question is empty"),
    ({"question": "x" * 5000}, "under 2,000 characters"),
    ({"question": "What is it?", "k": 51}, "less than or equal to 50"),
    ({"question": "What is it?", "date_from": "2021", "date_to": "2020"}, "range is reversed"),
    ({"question": "What is it?", "history": [{"role": "robot", "content": "hi"}]}, "user"),
    ({"question": "What is it?", "temperature": 2}, "Extra inputs are not permitted"),
    ({"k": 3}, "Field required"),
])
def test_a_bad_question_is_a_422_before_any_stream_starts(client, body, says):
    response = client.post("/api/ask", json=body)
    assert response.status_code == 422 and response.headers["content-type"] == "application/json"
    assert says in json.dumps(response.json()["detail"])


def test_with_a_login_every_endpoint_wants_the_apps_user_and_password(pipeline):
    running = serve(pipeline, auth=LOGIN)
    try:
        with httpx.Client(base_url=running.url, timeout=60) as c:
            for method, path, kwargs in [("GET", "/api/papers", {}), ("GET", "/api/search", {"params": {"q": "pointer"}}),
                                         ("POST", "/api/ask", {"json": {"question": ANSWERABLE, "stream": False}})]:
                anonymous = c.request(method, path, **kwargs)
                assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
                assert c.request(method, path, auth=("lab", "wrong"), **kwargs).status_code == 401
                assert c.request(method, path, auth=LOGIN, **kwargs).status_code == 200
            # the chat app behind the same login: Gradio's login form takes the same pair
            assert c.post("/login", data={"username": "lab", "password": "nope"}).status_code == 400
            assert c.post("/login", data={"username": LOGIN[0], "password": LOGIN[1]}).status_code == 200
    finally:
        running.close()


def readme_snippet() -> str:
    """The shell block of the README's REST section."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## REST API", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_the_readme_rest_snippet_runs_as_written(server):
    """The README's curl lines, run by a shell against a live server (its port swapped in)."""
    snippet = readme_snippet().replace("http://127.0.0.1:7860/", server.url)
    lines = [line for line in snippet.splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) == 3 and all(shlex.split(line)[0] == "curl" for line in lines)
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", snippet.replace("curl ", "curl --fail-with-body ")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "event: answer" in out.stdout and "Pointer Networks" in out.stdout


@pytest.mark.e2e
def test_the_bundled_model_streams_a_cited_answer(seed_settings, seed_index, embedder):
    from rag.generation import TransformersGenerator
    from rag.pipeline import Pipeline

    real = Pipeline(seed_settings, generator=TransformersGenerator(seed_settings), embedder=embedder,
                    index=seed_index)
    real.warm_up()
    running = serve(real)
    try:
        with httpx.Client(base_url=running.url, timeout=600) as c, \
                c.stream("POST", "/api/ask", json={"question": ANSWERABLE}) as response:
            seen = events(response)
    finally:
        running.close()
    answer = seen[-1][1]
    assert seen[-1][0] == "answer" and "token" in [n for n, _ in seen]  # the draft may be one value
    assert not answer["refused"] and "3.65" in answer["text"] and answer["citations"]
    assert answer["model"].startswith("qwen2.5-coder-0.5b")
