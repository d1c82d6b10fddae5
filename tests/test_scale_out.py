"""Scale-out: the index on a real Chroma server, the model behind the real
``python -m rag serve-model`` (OpenAI-compatible), and ``OpenAIGenerator`` against it.

The served model is a tiny Qwen2 built like the one in test_generation.py (BPE tokenizer
trained here, same chat template), with weights set by hand so that it is a deterministic
"parrot": whatever the prompt, it answers ``PARROT`` (a supported claim citing [1] and a
fabricated citation [9]), and its next-token odds after any prompt are Yes 12 : No 10 in
logits. So a full pipeline run over the network has a known draft to verify.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from helpers import free_port, tiny_qwen2, train_tokenizer
from rag.config import Settings
from rag.errors import ConfigError, ModelError
from rag.generation.remote import OpenAIGenerator
from test_generation import SPECIAL, TEMPLATE

ROOT = Path(__file__).resolve().parent.parent
PARROT = "Tiny widgets are small [1]. Gadgets scale to many sites[9]!"
CHAIN_LOGIT, YES_LOGIT, NO_LOGIT = 20.0, 12.0, 10.0
MSGS = [{"role": "system", "content": "Answer from the abstracts."},
        {"role": "user", "content": "How small are tiny widgets?"}]
MINE = [
    {"title": "A Study of Tiny Widgets", "abstract": "We study tiny widgets. They are small."},
    {"title": "Large Gadgets at Scale", "abstract": "We build large gadgets. They scale to 10 sites."},
]
STARTUP_S = 90  # bound on a server's start (2 shared cores, imports included)


# --- helpers ---------------------------------------------------------------------------------
def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _launch(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)


def _wait_ready(proc: subprocess.Popen, ready_url: str, log: Path, headers: dict | None = None) -> None:
    """Return once ``ready_url`` answers 200; fail (with the server's log) after STARTUP_S."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(ready_url, timeout=1, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    _stop(proc)
    pytest.fail(f"{proc.args[0]} did not start in {STARTUP_S} s:\n{log.read_text(errors='replace')[-2000:]}")


def build_parrot(folder: Path) -> Path:
    """A tiny Qwen2 whose layers add nothing (o_proj and down_proj are zero), so its logits
    depend on the last token only: orthogonal embeddings make it a bigram chain that spells
    PARROT after the prompt's final token, then ends; after that token Yes and No follow
    PARROT's first word in the ranking."""
    import torch

    tk, tok = train_tokenizer([PARROT] * 50 + ["Yes\nNo\nyes\nno\nYES\nNO"] * 50, 420, TEMPLATE)
    chain = tok.apply_chat_template(MSGS, add_generation_prompt=True, return_dict=False)[-1:]
    chain += tok.encode(PARROT, add_special_tokens=False) + [tok.eos_token_id]
    assert len(set(chain)) == len(chain), "PARROT must tokenize into distinct tokens"
    assert all(len(tok.encode(w, add_special_tokens=False)) == 1 for w in ("Yes", "No"))
    hidden = 64
    assert len(chain) - 1 <= hidden
    model = tiny_qwen2(tok, hidden=hidden, context=4096)
    scale = math.sqrt(hidden)  # RMSNorm turns a one-hot embedding into sqrt(hidden) * one-hot
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.lm_head.weight.zero_()
        for k, (here, after) in enumerate(zip(chain, chain[1:])):
            model.model.embed_tokens.weight[here, k] = 1.0
            model.lm_head.weight[after, k] = CHAIN_LOGIT / scale
        model.lm_head.weight[tok.convert_tokens_to_ids("Yes"), 0] = YES_LOGIT / scale
        model.lm_head.weight[tok.convert_tokens_to_ids("No"), 0] = NO_LOGIT / scale
    tok.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


# --- fixtures --------------------------------------------------------------------------------
API_KEY = "test-key-123"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Both real servers, launched together so that they boot while the tests load: a
    Chroma server (``chroma run``), then ``python -m rag serve-model`` serving the parrot
    (requiring API_KEY), each on a free loopback port; stopped at the end of the module."""
    folder, chroma_port, model_port = tmp_path_factory.mktemp("servers"), free_port(), free_port()
    chroma = Path(sys.executable).parent / "chroma"
    procs = {"chroma": (_launch([str(chroma), "run", "--path", str(folder / "db"), "--host", "127.0.0.1",
                                 "--port", str(chroma_port)], folder / "chroma.log"),
                        f"http://127.0.0.1:{chroma_port}", "/api/v2/heartbeat", folder / "chroma.log")}
    try:
        parrot = build_parrot(folder / "parrot")
        env = {**os.environ, "RAG_QUANTIZE": "false", "RAG_THREADS": "1", "RAG_OPENAI_API_KEY": API_KEY,
               "RAG_MODEL_CACHE_DIR": str(folder / "cache")}
        env.pop("RAG_OPENAI_URL", None)
        procs["model"] = (_launch([sys.executable, "-m", "rag", "serve-model", "--port", str(model_port),
                                   "--model", str(parrot), "--device", "cpu"], folder / "model.log", env),
                          f"http://127.0.0.1:{model_port}/v1", "/models", folder / "model.log")
        yield {**procs, "parrot": parrot}
    finally:
        for proc, *_ in procs.values():
            _stop(proc)


@pytest.fixture(scope="module")
def parrot(servers) -> Path:
    return servers["parrot"]


def _ready(servers: dict, name: str) -> str:
    proc, url, path, log = servers[name]
    _wait_ready(proc, url + path, log, {"Authorization": f"Bearer {API_KEY}"})
    return url


@pytest.fixture(scope="module")
def chroma_url(servers) -> str:
    return _ready(servers, "chroma")


@pytest.fixture(scope="module")
def model_url(servers) -> str:
    return _ready(servers, "model")


@pytest.fixture(scope="module")
def remote_index(chroma_url, tmp_path_factory, seed_papers, embedder):
    """A small JSONL corpus plus six seed papers, ingested into the Chroma server."""
    from rag.ingest import ingest

    folder = tmp_path_factory.mktemp("remote-corpus")
    (folder / "mine.jsonl").write_text("".join(json.dumps(p) + "\n" for p in MINE), encoding="utf-8")
    seeds = seed_papers[:6]
    (folder / "seeds.jsonl").write_text("".join(
        json.dumps({"id": p.paper_id, "title": p.title, "abstract": p.abstract}) + "\n" for p in seeds),
        encoding="utf-8")
    settings = Settings(chroma_url=chroma_url, index_dir=folder / "no-local-index", corpus=[])
    report = ingest(settings, [folder / "mine.jsonl", folder / "seeds.jsonl"], progress=False, embedder=embedder)
    return settings, report, seeds


@pytest.fixture()
def remote(model_url) -> OpenAIGenerator:
    gen = OpenAIGenerator(Settings(openai_url=model_url, openai_api_key=API_KEY))
    yield gen
    gen.close()


# --- (a) the index on a Chroma server --------------------------------------------------------
def test_index_lives_on_the_chroma_server(remote_index, embedder):
    from rag.ingest import ingest
    from rag.pipeline import Pipeline
    from rag.store import PaperIndex

    settings, report, seeds = remote_index
    assert report.papers == 8 and report.added == report.chunks > 0
    assert not settings.index_dir.exists()  # nothing written locally
    index = PaperIndex(settings, embedder=embedder)  # a second client of the same server
    assert index.count() == report.chunks
    assert {p.title for p in index.papers()} == {p["title"] for p in MINE} | {p.title for p in seeds}
    pipeline = Pipeline(settings, embedder=embedder, index=index)
    assert pipeline.search("how small are tiny widgets?")[0].title == "A Study of Tiny Widgets"
    assert pipeline.search(seeds[3].title, mode="dense")[0].title == seeds[3].title
    assert pipeline.search("gadgets scale sites", mode="bm25")[0].title == "Large Gadgets at Scale"
    again = ingest(settings, progress=False, embedder=embedder)  # sources remembered by the server
    assert (again.added, again.updated, again.removed, again.papers) == (0, 0, 0, 8)


# --- (b) the model behind serve-model --------------------------------------------------------
def test_served_model_streams_what_it_generates(remote, model_url, parrot, tmp_path):
    from rag.generation import TransformersGenerator

    assert remote.name == f"default @ {model_url}" and remote.device == "remote"
    pieces = list(remote.stream(MSGS, 32))
    assert len(pieces) > 3 and all(pieces)
    assert "".join(pieces) == remote.generate(MSGS, 32) == PARROT
    local = TransformersGenerator(Settings(model=str(parrot), device="cpu", quantize=False, threads=1,
                                           model_cache_dir=tmp_path))
    assert local.generate(MSGS, 32) == PARROT  # the server adds nothing
    assert remote.last_timing.new_tokens == local.last_timing.new_tokens
    assert "".join(remote.stream(MSGS, 3)) == local.generate(MSGS, 3)  # max_tokens is honoured
    expected = (math.exp(YES_LOGIT) + 2) / (math.exp(YES_LOGIT) + math.exp(NO_LOGIT) + 4)
    assert remote.yes_probability(MSGS) == pytest.approx(local.yes_probability(MSGS), abs=1e-3)
    assert remote.yes_probability(MSGS) == pytest.approx(expected, abs=1e-3)
    assert remote._logprobs  # answered from logprobs, not from the fallback
    r = httpx.post(f"{model_url}/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                   json={"messages": MSGS, "max_tokens": 1, "logprobs": True, "top_logprobs": 3}).json()
    top = r["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    assert [t["token"] for t in top] == ["Tiny", "Yes", "No"] and r["choices"][0]["message"]["content"] == "Tiny"
    models = httpx.get(f"{model_url}/models", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert models["data"][0]["id"] == str(parrot)


def test_pipeline_answer_through_both_servers_is_verified(remote_index, model_url, embedder):
    from rag.pipeline import Pipeline
    from rag.store import PaperIndex
    from rag.types import Token

    settings, _, _ = remote_index
    settings = settings.with_overrides(openai_url=model_url, openai_api_key=API_KEY, judge="generator")
    pipeline = Pipeline(settings, embedder=embedder, index=PaperIndex(settings, embedder=embedder))
    events = list(pipeline.stream("How small are tiny widgets?"))
    answer = events[-1]
    assert answer.raw_text == PARROT == "".join(e.text for e in events if isinstance(e, Token)).strip()
    assert answer.model == f"default @ {model_url}" and answer.device == "remote"
    # The fabricated [9] is gone: each kept sentence cites a retrieved source that supports it.
    assert "[9]" not in answer.text
    assert {c.number for c in answer.citations} <= set(range(1, len(answer.sources) + 1))
    by_title = {c.title: c for c in answer.citations}
    assert set(by_title) <= {p["title"] for p in MINE}
    if "Gadgets" in answer.text:
        assert f"[{by_title['Large Gadgets at Scale'].number}]!" in answer.text


def test_http_errors_are_clear(model_url):
    no_key = OpenAIGenerator(Settings(openai_url=model_url))
    for call in (lambda: list(no_key.stream(MSGS, 4)), no_key.load):
        with pytest.raises(ModelError, match="HTTP 401: missing or wrong API key; set RAG_OPENAI_API_KEY"):
            call()
    bad = OpenAIGenerator(Settings(openai_url=model_url, openai_api_key=API_KEY))
    assert bad.load() is bad
    with pytest.raises(ModelError, match="HTTP 400: 'max_tokens'"):
        bad.generate(MSGS, 10**6)


# --- (c) failures without a server -----------------------------------------------------------
def test_connection_refused_is_a_quick_clear_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    gen = OpenAIGenerator(Settings(openai_url=url))
    t0 = time.perf_counter()
    for call in (lambda: list(gen.stream(MSGS, 8)), lambda: gen.yes_probability(MSGS), gen.load):
        with pytest.raises(ModelError, match=rf"cannot reach the model server at {url}: .*unset RAG_OPENAI_URL"):
            call()
    assert time.perf_counter() - t0 < 5


def test_make_generator_picks_the_backend(tmp_path):
    from rag.generation import TransformersGenerator, make_generator
    from rag.pipeline import Pipeline

    assert isinstance(make_generator(Settings()), TransformersGenerator)
    remote = Pipeline(Settings(openai_url="http://127.0.0.1:1")).generator
    assert isinstance(remote, OpenAIGenerator) and remote.url == "http://127.0.0.1:1/v1"
    assert remote.count_tokens(MSGS) == 2 + sum(4 + math.ceil(len(m["content"]) / 4) for m in MSGS)
    with pytest.raises(ModelError, match="http://host:port/v1"):
        OpenAIGenerator(Settings(openai_url="localhost:8080"))


def _mock(handler) -> OpenAIGenerator:  # noqa: ANN001
    return OpenAIGenerator(Settings(openai_url="http://model.test/v1"), client=httpx.Client(
        transport=httpx.MockTransport(handler)))


@pytest.mark.parametrize("body, match", [
    (b"data: {not json\n\n", "malformed stream"),
    (b'data: {"choices": [{"delta": {"content": "Hi"}}]}\n\n', "ended before the answer finished"),
    (b'data: {"error": {"message": "out of memory"}}\n\n', "failed mid-answer: out of memory"),
])
def test_malformed_streams_are_model_errors(body, match):
    gen = _mock(lambda request: httpx.Response(200, content=body))
    with pytest.raises(ModelError, match=match):
        list(gen.stream(MSGS, 8))


@pytest.mark.parametrize("reply, p", [("Yes.", 1.0), ("No", 0.0), ("Maybe", 0.5)])
def test_yes_probability_without_logprobs_uses_the_reply(reply, p):
    def handler(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content).get("logprobs"):
            return httpx.Response(400, json={"error": {"message": "logprobs are not supported"}})
        return httpx.Response(200, json={"choices": [{"message": {"content": reply}}]})

    gen = _mock(handler)
    assert gen.yes_probability(MSGS) == p and gen.yes_probability(MSGS) == p
    assert gen._logprobs is False  # asked once, then remembered


def test_serve_model_refuses_a_busy_port():
    from rag.generation.server import serve

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match="choose another --port"):
            serve(Settings(), port=busy.getsockname()[1])
