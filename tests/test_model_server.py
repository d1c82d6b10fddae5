"""``python -m rag serve-model`` against what a security probe sent it: oversized bodies
(declared and chunked), prompts too long for the context window or the configured limit,
clients that hang up mid-generation, deeply nested or malformed JSON, loosely typed integers,
and a network ``--host`` without an API key.

The server is the real one: ``rag.generation.server.create_app`` under uvicorn in a thread of this
process, spoken to over real sockets (httpx, or raw HTTP/1.1 where the probe needs control of
the bytes), around a real ``TransformersGenerator`` loading a tiny Qwen2 built here (context
window 1,024 tokens). Its greedy output never holds a space, so the streamer has no piece to
hand out until the generation ends: the hardest case for stopping one at the next token.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from helpers import free_port
from rag.generation import server as model_server
from rag.cli import app
from rag.config import Settings
from rag.errors import ConfigError, ModelError
from rag.generation import TransformersGenerator
from rag.generation.server import ModelService, create_app
from test_generation import build_tiny_qwen2

ROOT = Path(__file__).resolve().parent.parent
CONTEXT = 1024  # the tiny model's context window (max_position_embeddings)
MSGS = [{"role": "system", "content": "Answer from the abstracts."},
        {"role": "user", "content": "What BLEU does the Transformer reach?"}]
CHAT = "/v1/chat/completions"


# --- the tiny model and the live server ------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Qwen2 (tokenizer trained here, the chat template of test_generation) that
    can only generate space-free word pieces: never a space, a newline or the end token."""
    _, tok, model = build_tiny_qwen2(lambda t: t.isascii() and t.isalpha(), CONTEXT)
    folder = tmp_path_factory.mktemp("tiny-spaceless")
    tok.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


class Live:
    """The real app under uvicorn on a free loopback port, in a thread of this process."""

    def __init__(self, settings: Settings, api_key: str | None = None) -> None:
        import uvicorn

        self.gen = TransformersGenerator(settings).load()
        self.service = ModelService(self.gen, "tiny")
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(self.service, api_key), log_config=None, access_log=False,
                                lifespan="off", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        _wait_for(lambda: self.server.started, 30, "the server did not start")

    def post(self, body: dict | bytes, timeout: float = 30) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.post(self.url + CHAT, content=body, timeout=timeout,
                              headers={"Content-Type": "application/json"})
        return httpx.post(self.url + CHAT, json=body, timeout=timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture(scope="module")
def settings_for(tiny_model, tmp_path_factory) -> Callable[..., Settings]:
    cache = tmp_path_factory.mktemp("cache")
    return lambda **kw: Settings(**{"model": str(tiny_model), "device": "cpu", "quantize": False, "threads": 1,
                                    "model_cache_dir": cache, **kw})


@pytest.fixture(scope="module")
def server(settings_for) -> Iterator[Live]:
    """The server with every limit at its default."""
    live = Live(settings_for())
    yield live
    live.stop()


@pytest.fixture()
def make_server(settings_for) -> Iterator[Callable[..., Live]]:
    """Servers with some settings changed (the tiny model stays loaded once)."""
    started: list[Live] = []

    def make(**kw) -> Live:
        started.append(Live(settings_for(**kw)))
        return started[-1]

    yield make
    for live in started:
        live.stop()


def _wait_for(condition: Callable[[], bool], seconds: float, why: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(why)
        time.sleep(0.01)


def _words(n: int) -> list[dict]:
    """MSGS with ``n`` more words in the question."""
    return [MSGS[0], {"role": "user", "content": MSGS[1]["content"] + " papers" * n}]


def _about(gen: TransformersGenerator, tokens: int) -> list[dict]:
    """MSGS lengthened to about ``tokens`` prompt tokens (within a word's tokens)."""
    base, per_word = gen.count_tokens(_words(0)), (gen.count_tokens(_words(100)) - gen.count_tokens(_words(0))) / 100
    return _words(int((tokens - base) / per_word))


def _generating() -> bool:
    return any(t.name == "serve-model-generate" for t in threading.enumerate())


def _error(r: httpx.Response, status: int) -> str:
    """The message of an OpenAI-style JSON error, checked to be one line of the right kind."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and "Traceback" not in r.text
    error = r.json()["error"]
    assert error["code"] == status and error["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    assert error["message"] and "\n" not in error["message"]
    return error["message"]


def _one_line_logs(caplog, status: int) -> None:
    """The server logged exactly one line for the failed request, and no traceback at all."""
    assert all(rec.exc_info is None and "\n" not in rec.getMessage() for rec in caplog.records), caplog.text
    assert [rec.getMessage() for rec in caplog.records if f"HTTP {status} for POST {CHAT}" in rec.getMessage()]
    assert len(caplog.records) == 1, caplog.text


# --- raw HTTP/1.1, for what httpx will not send ------------------------------------------------
def _open(port: int, head: str, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{head}\r\n"
                 .encode() + body)
    return sock


def _response(sock: socket.socket, timeout: float = 5) -> tuple[int, bytes]:
    """Status and body of the response on ``sock`` (a ``socket.timeout`` if none comes)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    while length and len(body) < int(length.group(1)) and (chunk := sock.recv(65536)):
        body += chunk
    return int(head.split()[1]), body


# --- what still works as before ---------------------------------------------------------------
def test_answers_streams_and_logprobs_as_before(server):
    r = server.post({"messages": MSGS, "max_tokens": 5})
    body = r.json()
    assert r.status_code == 200 and body["object"] == "chat.completion"
    text = body["choices"][0]["message"]["content"]
    assert text and " " not in text and body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": server.gen.count_tokens(MSGS), "completion_tokens": 5,
                             "total_tokens": server.gen.count_tokens(MSGS) + 5}
    events = httpx.post(server.url + CHAT, json={"messages": MSGS, "max_tokens": 5, "stream": True}).text
    chunks = [json.loads(line[6:]) for line in events.splitlines() if line.startswith("data: {")]
    assert events.rstrip().endswith("data: [DONE]") and chunks[-1]["usage"]["completion_tokens"] == 5
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == text
    top = server.post({"messages": MSGS, "max_tokens": 1, "logprobs": True, "top_logprobs": 3}).json()
    assert len(top["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 3
    assert server.post({"messages": MSGS, "max_tokens": 2, "max_completion_tokens": 3}).json()["usage"][
        "completion_tokens"] == 3  # the newer name wins
    assert server.post({"messages": MSGS, "max_tokens": None, "n": None}).json()["usage"][
        "completion_tokens"] == server.gen.settings.max_new_tokens  # null: the default


# --- 1. the body's size ---------------------------------------------------------------------------
def test_defaults_of_the_limits():
    assert Settings().serve_max_body_bytes == 2**20 and Settings().serve_max_prompt_tokens == 4096


def test_a_declared_body_over_the_cap_is_refused_before_it_is_read(server):
    sock = _open(server.port, f"Content-Length: {2**20 + 1}\r\n")  # and not one byte of it
    with sock:
        status, body = _response(sock)
    error = json.loads(body)["error"]
    assert status == 413 and error["code"] == 413 and "1,048,576 bytes" in error["message"]


def test_a_chunked_body_is_cut_off_at_the_cap(server):
    """No length declared: the server counts while it reads, and answers once past 1 MiB."""
    chunk = b"10000\r\n" + b" " * 2**16 + b"\r\n"  # 64 KiB of JSON whitespace
    sock = _open(server.port, "Transfer-Encoding: chunked\r\n")
    with sock:
        try:
            for _ in range(17):  # 1,088 KiB, and no final chunk: only the cap can end it
                sock.sendall(chunk)
        except OSError:  # the server answered and stopped listening: fine
            pass
        status, body = _response(sock)
    assert status == 413 and "1,048,576 bytes" in json.loads(body)["error"]["message"]


def test_a_body_at_the_cap_is_served_and_one_byte_more_is_413(make_server):
    live = make_server(serve_max_body_bytes=4096)
    body = json.dumps({"messages": MSGS, "max_tokens": 2}).encode()
    assert live.post(body + b" " * (4096 - len(body))).status_code == 200
    assert "RAG_SERVE_MAX_BODY_BYTES" in _error(live.post(body + b" " * (4097 - len(body))), 413)


# --- 2. the prompt's length ----------------------------------------------------------------------
def test_a_prompt_over_the_context_window_minus_max_tokens_is_400(server):
    messages = _about(server.gen, 980)
    tokens = server.gen.count_tokens(messages)
    assert 900 < tokens < CONTEXT
    message = _error(server.post({"messages": messages, "max_tokens": CONTEXT - tokens + 1}), 400)
    assert f"the prompt is {tokens:,} tokens" in message and "1,024-token context window" in message
    fits = server.post({"messages": messages, "max_tokens": CONTEXT - tokens})
    assert fits.status_code == 200 and fits.json()["usage"]["prompt_tokens"] == tokens
    assert "leaves no room" in _error(server.post({"messages": MSGS, "max_tokens": CONTEXT}), 400)


def test_a_configured_prompt_limit_is_smaller_still(make_server):
    live = make_server(serve_max_prompt_tokens=100)
    long = _about(live.gen, 160)
    tokens = live.gen.count_tokens(long)
    assert tokens > 100 and sum(len(m["content"]) for m in long) < 100 * model_server.CHARS_PER_TOKEN
    message = _error(live.post({"messages": long, "max_tokens": 2}), 400)
    assert f"the prompt is {tokens:,} tokens, over this server's limit of 100" in message
    assert "RAG_SERVE_MAX_PROMPT_TOKENS" in message
    assert live.gen.count_tokens(MSGS) <= 100 and live.post({"messages": MSGS, "max_tokens": 2}).status_code == 200


def test_the_prompt_is_checked_before_the_generation_slot(server):
    """With the one generation slot busy, an over-long prompt is still refused at once."""
    with server.service.lock:
        t0 = time.perf_counter()
        r = server.post({"messages": _about(server.gen, 980), "max_tokens": 200}, timeout=10)
        assert time.perf_counter() - t0 < 10
    assert "context window" in _error(r, 400)


def test_a_huge_prompt_is_refused_on_its_characters_untokenized(server, monkeypatch):
    counted, generated = [], []

    def stream(messages, max_new_tokens, **kw):  # noqa: ANN001, ANN003 - it must never run
        generated.append(messages)
        yield "x"

    monkeypatch.setattr(server.gen, "count_tokens", lambda messages: counted.append(messages) or 1)
    monkeypatch.setattr(server.gen, "stream", stream)
    huge = [{"role": "user", "content": "word " * 20_000}]  # 100,000 characters, as the probe sent
    message = _error(server.post({"messages": huge, "max_tokens": 4}), 400)
    assert "the prompt is 100,000 characters" in message and counted == generated == []


# --- 3. clients that disconnect ------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_a_client_that_disconnects_stops_its_generation_at_the_next_token(server, stream):
    """A client asks for 900 tokens at 20 ms each, then hangs up after a few: the generation
    stops at the next token and the slot is free at once, although no text piece was due."""
    forwards: list[float] = []

    def slow(*_) -> None:  # noqa: ANN002
        forwards.append(time.perf_counter())
        time.sleep(0.02)

    hook = server.gen.model.register_forward_pre_hook(slow)
    try:
        body = json.dumps({"messages": MSGS, "max_tokens": 900, "stream": stream}).encode()
        sock = _open(server.port, f"Content-Length: {len(body)}\r\n", body)
        if stream:  # read up to the role chunk: the stream is open
            sock.settimeout(10)
            received = b""
            while b"data: " not in received:
                received += sock.recv(65536)
        _wait_for(lambda: len(forwards) >= 5, 30, "the generation did not start")
        sock.close()
        at_close = len(forwards)
        freed = server.service.lock.acquire(timeout=5)
        after = len(forwards) - at_close
        if freed:
            server.service.lock.release()
    finally:
        hook.remove()
    assert freed, "the generation slot is still held after the client left"
    assert after <= 3 and server.gen.last_timing.new_tokens < 20
    assert server.post({"messages": MSGS, "max_tokens": 3}, timeout=10).status_code == 200


def test_a_client_that_disconnects_while_waiting_for_the_slot_never_generates(server):
    calls: list[int] = []
    hook = server.gen.model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with server.service.lock:  # another generation holds the slot
            body = json.dumps({"messages": MSGS, "max_tokens": 50}).encode()
            sock = _open(server.port, f"Content-Length: {len(body)}\r\n", body)
            _wait_for(_generating, 10, "the request did not reach the slot")
            sock.close()
            time.sleep(0.5)
        _wait_for(lambda: not _generating(), 10, "the request still waits for the slot")
    finally:
        hook.remove()
    assert calls == []


# --- 4. a network host needs a key ------------------------------------------------------------
def test_a_network_host_without_a_key_refuses_to_start(tmp_path):
    """Refused with one line before anything loads (the model named does not even exist)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAG_OPENAI_API_KEY", "RAG_OPENAI_URL")}
    port = free_port()
    out = subprocess.run([sys.executable, "-m", "rag", "serve-model", "--host", "0.0.0.0", "--port", str(port),
                          "--model", str(tmp_path / "no-model")], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert lines[0].startswith("error: refusing to serve on 0.0.0.0 without authentication")
    assert "RAG_OPENAI_API_KEY" in lines[0] and "--no-auth" in lines[0]


class _NoLoad:
    """Stands in for the generator: reaching it means ``serve`` let the host through."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def load(self) -> None:
        raise ModelError("stub: the model would load now")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "model.example.org"])
def test_serve_refuses_any_non_loopback_host_without_a_key(host, monkeypatch):
    monkeypatch.setattr(model_server, "TransformersGenerator", _NoLoad)
    with pytest.raises(ConfigError, match=r"set RAG_OPENAI_API_KEY .* or pass --no-auth"):
        model_server.serve(Settings(openai_api_key=None), host=host, port=free_port(), echo=lambda m: None)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_needs_no_key(host, monkeypatch):
    monkeypatch.setattr(model_server, "TransformersGenerator", _NoLoad)
    said: list[str] = []
    with pytest.raises(ModelError, match="stub"):
        model_server.serve(Settings(openai_api_key=None), host=host, port=free_port(), echo=said.append)
    assert said == []


@pytest.mark.parametrize("flags, key, expected", [
    (["--no-auth"], None, "warning: serving on 0.0.0.0:{port} without authentication (--no-auth)"),
    ([], "a-key", None),
    (["--no-auth"], "a-key", "error: --no-auth contradicts RAG_OPENAI_API_KEY"),
])
def test_no_auth_or_a_key_lets_a_network_host_start(flags, key, expected, monkeypatch):
    monkeypatch.setattr(model_server, "TransformersGenerator", _NoLoad)
    port = free_port()
    result = CliRunner().invoke(app, ["serve-model", "--host", "0.0.0.0", "--port", str(port), *flags],
                                env={"RAG_OPENAI_API_KEY": key, "RAG_OPENAI_URL": None})
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1, result.output
    if expected and expected.startswith("error:"):
        assert lines == [lines[0]] and lines[0].startswith(expected)
        return
    assert lines[-1] == "error: stub: the model would load now"  # past the check, loading
    assert lines[:-1] == ([expected.format(port=port) + ": anyone who reaches it can use it"] if expected else [])


# --- 5. malformed JSON ------------------------------------------------------------------------------
@pytest.mark.parametrize("body, expected", [
    (b"[" * 100_000, "the body is not JSON: nested too deeply"),
    (b'{"a": ' * 100_000, "the body is not JSON: nested too deeply"),
    (b'{"messages": [', "the body is not JSON: Expecting value"),
    (b"\xff\xfe{}", "the body is not JSON"),
    (b'{"messages": [], "max_tokens": ' + b"9" * 5000 + b"}", "the body is not JSON: Exceeds the limit"),
    (b'{"messages": [{"role": "user", "content": "a \\ud800 b"}]}', "valid Unicode"),
    (b'{"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}', "a string 'content'"),
    (b'{"messages": "hi"}', "'messages' must be a non-empty list"),
], ids=["deep-array", "deep-object", "truncated", "not-utf8", "huge-int", "lone-surrogate", "non-text-part",
        "messages-not-list"])
def test_malformed_json_is_a_one_line_400_and_one_log_line(server, body, expected, caplog):
    caplog.set_level("WARNING")
    assert expected in _error(server.post(body), 400)
    _one_line_logs(caplog, 400)


def test_a_failing_generation_is_one_line_without_traceback(server, monkeypatch, caplog):
    def broken(messages, max_new_tokens, **kw):  # noqa: ANN001, ANN003
        yield "Half"
        raise RuntimeError("kernel failed\n  File 'x.py', line 1")

    monkeypatch.setattr(server.gen, "stream", broken)
    caplog.set_level("WARNING")
    assert _error(server.post({"messages": MSGS, "max_tokens": 4}), 500) == "RuntimeError: kernel failed"
    _one_line_logs(caplog, 500)
    caplog.clear()
    events = httpx.post(server.url + CHAT, json={"messages": MSGS, "max_tokens": 4, "stream": True}).text
    error = json.loads(events.strip().splitlines()[-1][6:])["error"]
    assert error == {"message": "RuntimeError: kernel failed", "type": "server_error"}
    _one_line_logs(caplog, 500)


# --- 6. strict integers -----------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("max_tokens", 0), ("max_tokens", True), ("max_tokens", False), ("max_tokens", 4.0), ("max_tokens", "4"),
    ("max_tokens", -1), ("max_tokens", 10**6), ("max_completion_tokens", 0), ("max_completion_tokens", True),
    ("n", 0), ("n", True), ("n", 2), ("n", 1.0), ("top_logprobs", True), ("top_logprobs", False),
    ("top_logprobs", -1), ("top_logprobs", 21), ("top_logprobs", 1.5), ("top_logprobs", ""),
])
def test_integer_fields_are_strict(server, field, value):
    request = {"messages": MSGS, "max_tokens": 2, "logprobs": field == "top_logprobs", field: value}
    assert _error(server.post(request), 400).startswith(f"'{field}' must be an integer from")
