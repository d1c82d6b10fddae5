"""``python -m rag serve-model``: the local ``TransformersGenerator`` (same device choice, int8
on CPU, always greedy) behind a small OpenAI-compatible API that app instances share through
``RAG_OPENAI_URL=http://host:port/v1``: ``POST /v1/chat/completions`` (``max_tokens``, ``stream``
as server-sent ``chat.completion.chunk`` events ending with ``usage`` and ``[DONE]``; next-token
``top_logprobs`` when ``logprobs`` and ``max_tokens: 1``), ``GET /v1/models``, ``GET /health``.
One generation at a time; a client that disconnects stops its generation at the next token.
Loopback by default; with ``RAG_OPENAI_API_KEY`` set, ``/v1`` requires ``Bearer KEY``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import closing
from typing import Any

from .compute_thread import run_on_compute_thread
from .config import Settings
from .errors import ConfigError, RagError
from .generation import REPETITION_PENALTY, TransformersGenerator

MAX_TOKENS, MAX_TOP_LOGPROBS = 4096, 20


class BadRequest(Exception):
    """A request this server cannot serve (HTTP 400)."""


def _message(m: Any) -> dict:
    content = m.get("content") if isinstance(m, dict) else None
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(content, str) or not isinstance(m.get("role"), str):
        raise BadRequest("each message needs a 'role' and a string 'content'")
    return {"role": m["role"], "content": content}


def parse_request(body: Any, default_max: int) -> dict:
    """The request's fields this server uses, validated (``BadRequest`` otherwise)."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise BadRequest("'messages' must be a non-empty list")
    top, n = body.get("top_logprobs") or 0, body.get("n", 1)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max
    for name, value, low, high in (("max_tokens", max_tokens, 1, MAX_TOKENS), ("n", n, 1, 1),
                                   ("top_logprobs", top, 0, MAX_TOP_LOGPROBS)):
        if not isinstance(value, int) or not low <= value <= high:
            raise BadRequest(f"'{name}' must be an integer from {low} to {high}")
    return {"messages": [_message(m) for m in body["messages"]], "max_tokens": max_tokens, "top_logprobs": top,
            "stream": bool(body.get("stream")), "logprobs": bool(body.get("logprobs"))}


def _usage(prompt: int, completion: int, finish: str) -> dict:
    return {"finish": finish,
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


class ModelService:
    """The loaded generator plus the lock that serves one generation at a time."""

    def __init__(self, generator: TransformersGenerator, model_id: str) -> None:
        self.gen, self.model_id, self.lock = generator, model_id, threading.Lock()

    def next_token(self, messages: list[dict], top_n: int) -> dict:
        """The greedy next token (as ``generate`` picks it) and the top log-probabilities."""
        lm = self.gen._loaded()  # noqa: SLF001 - same package: identical prompt encoding
        with self.lock, lm.lock:  # taken here: the compute thread never waits for a lock
            return run_on_compute_thread(self._next_token, lm, messages, top_n)

    def _next_token(self, lm: Any, messages: list[dict], top_n: int) -> dict:
        import torch

        gen = self.gen
        with torch.inference_mode():
            ids = gen._encode(lm, messages)  # noqa: SLF001
            eos = gen._gen_kwargs(lm, ids, 1)["eos_token_id"] or []  # noqa: SLF001
            logits = lm.model(input_ids=ids).logits[0, -1].float()
            logprobs, seen, penalized = torch.log_softmax(logits, dim=-1), ids[0].unique(), logits.clone()
            penalized[seen] = torch.where(logits[seen] > 0, logits[seen] / REPETITION_PENALTY,
                                          logits[seen] * REPETITION_PENALTY)  # as generate() does
            choice, decode = int(penalized.argmax()), lm.tokenizer.decode
            top = torch.topk(logprobs, max(top_n, 1)).indices.tolist()[:top_n]
            entry = {i: {"token": (t := decode([i])), "logprob": float(logprobs[i]),
                         "bytes": list(t.encode("utf-8"))} for i in (choice, *top)}
        info, stop = {**entry[choice], "top_logprobs": [entry[i] for i in top]}, choice in eos
        return {"text": "" if stop else decode([choice], skip_special_tokens=True), "logprobs": {"content": [info]},
                **_usage(int(ids.shape[1]), 1, "stop" if stop else "length")}

    async def pieces(self, req: dict, out: dict) -> AsyncIterator[str]:
        """Text pieces, generated in a worker thread; then ``out`` gets usage (and logprobs)."""
        if req["logprobs"] and req["max_tokens"] == 1:
            out.update(await asyncio.to_thread(self.next_token, req["messages"], req["top_logprobs"]))
            yield out["text"]
            return
        loop, queue, cancelled = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()

        def put(item: tuple) -> None:  # a closed loop: the server is gone, nobody listens
            loop.is_closed() or loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                with self.lock:
                    with closing(self.gen.stream(req["messages"], req["max_tokens"])) as it:
                        for piece in it:
                            if cancelled.is_set():
                                break
                            put(("piece", piece))
                    timing = self.gen.last_timing  # set when the stream closed
                put(("end", timing))
            except Exception as exc:  # noqa: BLE001 - reported to the client
                put(("error", exc))

        threading.Thread(target=work, name="serve-model-generate", daemon=True).start()
        try:
            while (item := await queue.get())[0] == "piece":
                yield item[1]
            if item[0] == "error":
                raise item[1]
            t = item[1]
            out.update(_usage(t.prompt_tokens, t.new_tokens, "length" if t.new_tokens >= req["max_tokens"] else "stop"))
        finally:
            cancelled.set()


def _why(exc: Exception) -> str:
    return str(exc) if isinstance(exc, RagError) else f"{type(exc).__name__}: {exc}"


def create_app(service: ModelService, api_key: str | None = None):  # noqa: ANN201
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)

    def denied(request) -> Any:  # noqa: ANN001
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            return _error(401, "missing or wrong API key", "authentication_error")

    async def chat(request):  # noqa: ANN001, ANN202
        if no := denied(request):
            return no
        try:
            req = parse_request(json.loads(await request.body() or b"null"), service.gen.settings.max_new_tokens)
        except (BadRequest, ValueError) as exc:
            return _error(400, str(exc) if isinstance(exc, BadRequest) else "the body is not JSON")
        head, r = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": service.model_id}, {}
        if not req["stream"]:
            try:
                text = "".join([p async for p in service.pieces(req, r)])
            except Exception as exc:  # noqa: BLE001
                return _error(500, _why(exc), "server_error")
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "logprobs": r.get("logprobs"), "finish_reason": r["finish"]}
            return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": r["usage"]})

        def chunk(delta: dict, finish: str | None = None, **extra: Any) -> str:
            c = {"index": 0, "delta": delta, "logprobs": r.get("logprobs") if delta else None, "finish_reason": finish}
            return f"data: {json.dumps({**head, 'object': 'chat.completion.chunk', 'choices': [c], **extra})}\n\n"

        async def events() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            try:
                async for piece in service.pieces(req, r):
                    yield chunk({"content": piece})
            except Exception as exc:  # noqa: BLE001
                yield f"data: {json.dumps({'error': {'message': _why(exc), 'type': 'server_error'}})}\n\n"
                return
            yield chunk({}, r["finish"], usage=r["usage"])
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def models(request):  # noqa: ANN001, ANN202
        return denied(request) or JSONResponse({"object": "list", "data": [
            {"id": service.model_id, "object": "model", "created": 0, "owned_by": "citewise"}]})

    async def health(request):  # noqa: ANN001, ANN202
        return JSONResponse({"status": "ok", "model": service.gen.name, "device": service.gen.device})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/models", models), Route("/health", health)])


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8080, echo=print) -> None:  # noqa: ANN001
    """Load the model, then serve it until interrupted (Ctrl+C)."""
    import uvicorn

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.openai_api_key:
        echo(f"warning: serving on {host} without authentication; set RAG_OPENAI_API_KEY to require a key")
    gen = TransformersGenerator(settings).load()
    echo(f"Serving {gen.name} on {gen.device} at http://{host}:{port}/v1 (Ctrl+C stops)")
    uvicorn.run(create_app(ModelService(gen, settings.model), settings.openai_api_key),
                host=host, port=port, log_level="warning", access_log=False)
