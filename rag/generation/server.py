"""``python -m rag serve-model``: the local ``TransformersGenerator`` (same device choice, int8
on CPU, always greedy) behind a small OpenAI-compatible API that app instances share through
``RAG_OPENAI_URL=http://host:port/v1``: ``POST /v1/chat/completions`` (``max_tokens``, ``stream``
as server-sent ``chat.completion.chunk`` events ending with ``usage`` and ``[DONE]``; next-token
``top_logprobs`` when ``logprobs`` and ``max_tokens: 1``), ``GET /v1/models``, ``GET /health``.

One generation at a time, so every request is bounded before it may wait for that slot:

* the body: at most ``RAG_SERVE_MAX_BODY_BYTES`` (1 MiB), checked on its Content-Length before
  it is read and again while it is read (chunked): HTTP 413;
* the JSON: not JSON (nested too deeply included) or wrongly typed is HTTP 400, and integers
  are strict: ``true``, ``1.0``, ``"4"`` and a ``max_tokens`` of 0 are refused;
* the prompt: at most ``RAG_SERVE_MAX_PROMPT_TOKENS`` (4,096) tokens once the chat template is
  applied, and never more than the model's context window minus ``max_tokens``: HTTP 400.
  Counted with the model's tokenizer after a cheap check on characters, so a huge prompt is
  refused without being tokenized.

A client that disconnects, streaming or not, stops its generation at the next token, which
frees the slot. Every failure is one line of OpenAI-style JSON (``{"error": {...}}``) to the
client and one line in the server's log, never a traceback.

Loopback by default; with ``RAG_OPENAI_API_KEY`` set, ``/v1`` requires ``Bearer KEY``. Any other
``--host`` refuses to start without that key, unless ``--no-auth`` asks to serve without one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.types import Receive, Scope, Send

from ..config import Settings
from ..errors import ConfigError, RagError
from .base import TimingInfo
from .local import TokenOption, TransformersGenerator

MAX_TOKENS, MAX_TOP_LOGPROBS = 4096, 20
#: The character check's bound: a prompt over its token limit times this many characters is
#: refused untokenized (prose runs about 4 characters a token, code about 3).
CHARS_PER_TOKEN = 10
#: Answered when the client is gone (nginx's "client closed request"); nobody reads it.
CLIENT_GONE = 499

log = logging.getLogger(__name__)


class BadRequest(Exception):
    """A request this server cannot serve (HTTP 400)."""

    status = 400


class TooLarge(BadRequest):
    """A request body over the server's limit (HTTP 413)."""

    status = 413


def _one_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


def _text(content: Any) -> Any:
    """A message's content as one string (``None`` when it is not text)."""
    if not isinstance(content, list):
        return content
    parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return "".join(parts) if all(isinstance(p, str) for p in parts) else None


def _message(m: Any) -> dict:
    content = _text(m.get("content")) if isinstance(m, dict) else None
    if not isinstance(content, str) or not isinstance(m.get("role"), str):
        raise BadRequest("each message needs a 'role' and a string 'content'")
    try:
        (m["role"] + content).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("message text must be valid Unicode (it holds a lone surrogate)") from None
    return {"role": m["role"], "content": content}


def _integer(body: dict, name: str, default: int, low: int, high: int) -> int:
    """``body[name]`` (``default`` when absent or null): an integer from ``low`` to ``high``;
    a bool, a float or a string is refused (``BadRequest``), however it would convert."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"'{name}' must be an integer from {low} to {high}")
    return value


def parse_json(body: bytes) -> Any:
    """The JSON value of ``body`` (``None`` when empty); ``BadRequest`` for anything else,
    JSON nested too deeply for the parser and over-long integers included."""
    try:
        return json.loads(body or b"null")
    except RecursionError:
        raise BadRequest("the body is not JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, integers over 4,300 digits
        raise BadRequest(f"the body is not JSON: {_one_line(str(exc))}") from None


def parse_request(body: Any, default_max: int) -> dict:
    """The request's fields this server uses, validated (``BadRequest`` otherwise)."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise BadRequest("'messages' must be a non-empty list")
    max_tokens = _integer(body, "max_tokens", default_max, 1, MAX_TOKENS)
    max_tokens = _integer(body, "max_completion_tokens", max_tokens, 1, MAX_TOKENS)  # the newer name wins
    _integer(body, "n", 1, 1, 1)
    top = _integer(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS)
    return {"messages": [_message(m) for m in body["messages"]], "max_tokens": max_tokens, "top_logprobs": top,
            "stream": bool(body.get("stream")), "logprobs": bool(body.get("logprobs"))}


def context_window(config: Any) -> int | None:
    """The context window (tokens) a transformers model config declares; ``None`` if none."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n = getattr(text, "max_position_embeddings", None)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def _usage(prompt: int, completion: int, finish: str) -> dict:
    return {"finish": finish,
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


class ModelService:
    """The loaded generator, the lock that serves one generation at a time, and the limits
    (``Settings.serve_max_body_bytes``, ``serve_max_prompt_tokens``) checked before it."""

    def __init__(self, generator: TransformersGenerator, model_id: str) -> None:
        self.gen, self.model_id, self.lock = generator, model_id, threading.Lock()
        self.max_body = generator.settings.serve_max_body_bytes
        self.max_prompt = generator.settings.serve_max_prompt_tokens

    @property
    def context(self) -> int | None:
        """The model's context window in tokens (``None`` when its config does not say)."""
        return context_window(self.gen.model.config)

    def prompt_limit(self, max_tokens: int) -> tuple[int, str]:
        """The most prompt tokens a request for ``max_tokens`` new tokens may send, and why."""
        context = self.context
        if context is not None and context - max_tokens < self.max_prompt:
            return context - max_tokens, f"the model's {context:,}-token context window minus max_tokens {max_tokens:,}"
        return self.max_prompt, "RAG_SERVE_MAX_PROMPT_TOKENS"

    def check_prompt(self, req: dict) -> int:
        """The prompt's length in tokens (the generator's tokenizer and chat template), or
        ``BadRequest`` when it is over the limit; a prompt over the limit on characters alone
        is refused before it is tokenized. Runs before the generation slot is taken."""
        limit, why = self.prompt_limit(req["max_tokens"])
        if limit < 1:
            raise BadRequest(f"'max_tokens' {req['max_tokens']:,} leaves no room for a prompt in the model's "
                             f"{self.context:,}-token context window")
        chars = sum(len(m["content"]) for m in req["messages"])
        if chars > limit * CHARS_PER_TOKEN:
            raise BadRequest(f"the prompt is {chars:,} characters, too long for this server's limit of "
                             f"{limit:,} tokens ({why})")
        tokens = self.gen.count_tokens(req["messages"])
        if tokens > limit:
            raise BadRequest(f"the prompt is {tokens:,} tokens, over this server's limit of {limit:,} ({why}); "
                             "shorten the messages or lower max_tokens")
        return tokens

    def next_token(self, messages: list[dict], top_n: int) -> dict:
        """The greedy next token (as ``generate`` picks it) and the top log-probabilities."""
        with self.lock:
            first = self.gen.next_token(messages, top_n)

        def entry(option: TokenOption) -> dict:
            return {"token": option.token, "logprob": option.logprob, "bytes": list(option.token.encode("utf-8"))}

        info = {**entry(first.choice), "top_logprobs": [entry(o) for o in first.top]}
        return {"text": first.text, "logprobs": {"content": [info]},
                **_usage(first.prompt_tokens, 1, "stop" if first.is_end else "length")}

    def _generate(self, req: dict, cancel: threading.Event, put: Callable[[tuple], None]) -> TimingInfo | None:
        """One generation, in the calling thread, each piece handed to ``put``; its timing."""
        with closing(self.gen.stream(req["messages"], req["max_tokens"], stop=cancel)) as it:
            for piece in it:
                if cancel.is_set():
                    break
                put(("piece", piece))
        return self.gen.last_timing  # set when the stream closed

    async def pieces(self, req: dict, out: dict, cancel: threading.Event | None = None) -> AsyncIterator[str]:
        """Text pieces, generated in a worker thread; then ``out`` gets usage (and logprobs).
        Setting ``cancel`` (the client is gone) stops the generation at the next token, as does
        leaving this iterator early; a request cancelled while it waited for the slot never
        generates (and ``out`` gets no usage)."""
        if req["logprobs"] and req["max_tokens"] == 1:
            out.update(await asyncio.to_thread(self.next_token, req["messages"], req["top_logprobs"]))
            yield out["text"]
            return
        cancel = threading.Event() if cancel is None else cancel
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()

        def put(item: tuple) -> None:  # a closed loop: the server is gone, nobody listens
            loop.is_closed() or loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                with self.lock:
                    timing = None if cancel.is_set() else self._generate(req, cancel, put)
                put(("end", timing))
            except Exception as exc:  # noqa: BLE001 - reported to the client
                put(("error", exc))

        threading.Thread(target=work, name="serve-model-generate", daemon=True).start()
        try:
            while (item := await queue.get())[0] == "piece":
                yield item[1]
            if item[0] == "error":
                raise item[1]
            if (t := item[1]) is not None:
                finish = "length" if t.new_tokens >= req["max_tokens"] else "stop"
                out.update(_usage(t.prompt_tokens, t.new_tokens, finish))
        finally:
            cancel.set()


def _why(exc: Exception) -> str:
    return _one_line(str(exc) if isinstance(exc, RagError) else f"{type(exc).__name__}: {exc}")


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, refused (``TooLarge``) past ``limit`` bytes: on its Content-Length
    before any of it is read, and while it is read (a chunked body declares no length)."""
    declared = request.headers.get("content-length")
    too_large = f"the request body is over this server's limit of {limit:,} bytes (RAG_SERVE_MAX_BODY_BYTES)"
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadRequest("the Content-Length header is not a number")
        if int(declared) > limit:
            raise TooLarge(too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(too_large)
    return bytes(body)


async def _until_disconnected(request: Any, cancel: threading.Event) -> None:
    """Set ``cancel`` once the client disconnects (its body was read: nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    cancel.set()


def create_app(service: ModelService, api_key: str | None = None) -> Starlette:
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    class EventStream(StreamingResponse):
        """Server-sent events whose generation is cancelled once the response ends, however
        it ends (Starlette stops it when the client disconnects)."""

        def __init__(self, events: AsyncIterator[str], cancel: threading.Event) -> None:
            super().__init__(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
            self.cancel = cancel

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                self.cancel.set()

    def _error(request: Request, status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
        client = request.client.host if request.client else "?"
        log.log(logging.ERROR if status >= 500 else logging.WARNING, "serve-model: HTTP %d for %s %s from %s: %s",
                status, request.method, request.url.path, client, message)
        return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)

    def guarded(endpoint: Callable[[Any], Awaitable[Response]]) -> Callable[[Any], Awaitable[Response]]:
        """``endpoint`` with every failure answered, and logged, as one line: no traceback."""

        async def run(request: Request) -> Response:
            try:
                return await endpoint(request)
            except ClientDisconnect:  # gone while sending its body
                return Response(status_code=CLIENT_GONE)
            except BadRequest as exc:
                return _error(request, exc.status, str(exc))
            except Exception as exc:  # noqa: BLE001
                return _error(request, 500, _why(exc), "server_error")

        return run

    def denied(request: Request) -> Any:
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            return _error(request, 401, "missing or wrong API key", "authentication_error")

    async def chat(request: Request) -> Response:
        if no := denied(request):
            return no
        body = parse_json(await read_body(request, service.max_body))
        req = parse_request(body, service.gen.settings.max_new_tokens)
        await asyncio.to_thread(service.check_prompt, req)  # before the slot: a refusal never waits
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": service.model_id}
        return event_stream(request, req, head) if req["stream"] else await complete(request, req, head)

    async def complete(request: Request, req: dict, head: dict) -> Response:
        r, cancel = {}, threading.Event()
        watch = asyncio.create_task(_until_disconnected(request, cancel))
        try:
            text = "".join([p async for p in service.pieces(req, r, cancel)])
        finally:
            watch.cancel()
        if "finish" not in r:  # cancelled before it began: the client is gone
            return Response(status_code=CLIENT_GONE)
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "logprobs": r.get("logprobs"), "finish_reason": r["finish"]}
        return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": r["usage"]})

    def event_stream(request: Request, req: dict, head: dict) -> Response:
        r, cancel = {}, threading.Event()

        def chunk(delta: dict, finish: str | None = None, **extra: Any) -> str:
            c = {"index": 0, "delta": delta, "logprobs": r.get("logprobs") if delta else None, "finish_reason": finish}
            return f"data: {json.dumps({**head, 'object': 'chat.completion.chunk', 'choices': [c], **extra})}\n\n"

        async def events() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            try:
                async for piece in service.pieces(req, r, cancel):
                    yield chunk({"content": piece})
            except Exception as exc:  # noqa: BLE001 - the status is sent: the error is an event
                why = _why(exc)
                _error(request, 500, why, "server_error")  # for its log line
                yield f"data: {json.dumps({'error': {'message': why, 'type': 'server_error'}})}\n\n"
                return
            if "finish" in r:  # else cancelled before it began
                yield chunk({}, r["finish"], usage=r["usage"])
                yield "data: [DONE]\n\n"

        return EventStream(events(), cancel)

    async def models(request: Request) -> Response:
        return denied(request) or JSONResponse({"object": "list", "data": [
            {"id": service.model_id, "object": "model", "created": 0, "owned_by": "citewise"}]})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": service.gen.name, "device": service.gen.device})

    return Starlette(routes=[Route("/v1/chat/completions", guarded(chat), methods=["POST"]),
                             Route("/v1/models", guarded(models)), Route("/health", guarded(health))])


def is_loopback(host: str) -> bool:
    """True for an interface that only this machine reaches (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_exposure(host: str, port: int, api_key: str | None, no_auth: bool) -> str | None:
    """Refuse (``ConfigError``) to serve a non-loopback ``host`` without an API key unless
    ``no_auth``; the warning to show when serving one without a key, else ``None``."""
    if no_auth and api_key:
        raise ConfigError("--no-auth contradicts RAG_OPENAI_API_KEY; unset the key or drop --no-auth")
    if api_key or is_loopback(host):
        return None
    if not no_auth:
        raise ConfigError(f"refusing to serve on {host} without authentication: set RAG_OPENAI_API_KEY "
                          "(clients then send it as a Bearer token), or pass --no-auth to serve without one")
    return f"warning: serving on {host}:{port} without authentication (--no-auth): anyone who reaches it can use it"


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8080, echo: Callable[[str], object] = print,
          no_auth: bool = False) -> None:
    """Load the model, then serve it until interrupted (Ctrl+C)."""
    import uvicorn

    warning = check_exposure(host, port, settings.openai_api_key, no_auth)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
    if warning:
        echo(warning)
    gen = TransformersGenerator(settings).load()
    echo(f"Serving {gen.name} on {gen.device} at http://{host}:{port}/v1 (Ctrl+C stops)")
    uvicorn.run(create_app(ModelService(gen, settings.model), settings.openai_api_key),
                host=host, port=port, log_level="warning", access_log=False)
