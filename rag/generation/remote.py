"""Generation on a remote OpenAI-compatible server (vLLM, TGI, llama.cpp server, Ollama, or
``python -m rag serve-model``): set ``RAG_OPENAI_URL=http://host:port/v1`` and every app
instance shares one model. :class:`OpenAIGenerator` implements the ``Generator`` protocol:

* ``stream`` posts ``stream: true`` to ``/chat/completions`` and yields the server-sent
  ``content`` deltas until ``data: [DONE]``; greedy (``temperature: 0``), up to ``max_tokens``.
* ``yes_probability`` asks for one token with ``logprobs``/``top_logprobs`` and returns
  P(Yes) / (P(Yes) + P(No)) over the listed candidates. A server that refuses logprobs
  (HTTP 400/422) or omits them is, from then on, asked for a plain one-token reply:
  "Yes" 1.0, "No" 0.0, anything else 0.5.
* ``count_tokens`` is an estimate, since the chat API does not expose the tokenizer: about
  4 characters per token (English prose, BPE vocabularies) plus 4 tokens of chat markup
  per message, plus 2. Good for budgets, not for exact context-window checks.
* every failure (refused connection, timeout, HTTP error, bad stream) is a clear ``ModelError``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx

from ..config import Settings
from ..errors import ModelError
from ..injection import escaped_messages
from .base import NO_WORDS, YES_WORDS, TimingInfo

CHARS_PER_TOKEN, TOKENS_PER_MESSAGE, TOP_LOGPROBS = 4, 4, 20  # 20: OpenAI's (and vLLM's) maximum
CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 300.0  # read: the longest wait for the next bytes


def api_base(url: str) -> str:
    """``http://host:port`` or ``http://host:port/v1`` → the API base, no trailing slash."""
    url = url.strip().rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ModelError(f"RAG_OPENAI_URL must look like http://host:port/v1, not {url!r}")
    return url if parsed.path else url + "/v1"


class OpenAIGenerator:
    """The :class:`~rag.generation.Generator` protocol over an OpenAI-compatible HTTP API."""

    device = "remote"
    is_loaded = True  # nothing loads here; ``load`` checks that the server answers

    def __init__(self, settings: Settings, client: httpx.Client | None = None) -> None:
        if not settings.openai_url:
            raise ModelError("OpenAIGenerator needs settings.openai_url (RAG_OPENAI_URL)")
        self.settings, self.url, self.model = settings, api_base(settings.openai_url), settings.openai_model
        self.name = f"{self.model} @ {self.url}"
        self.last_timing: TimingInfo | None = None
        self._logprobs = True  # until the server shows that it does not report them
        key = settings.openai_api_key
        self._client = client or httpx.Client(headers={"Authorization": f"Bearer {key}"} if key else {},
                                              timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT))

    def _fail(self, exc: Exception) -> ModelError:
        at = f"the model server at {self.url}"
        if isinstance(exc, ModelError):
            return exc
        if isinstance(exc, httpx.TimeoutException):
            return ModelError(f"{at} did not answer in time ({type(exc).__name__}); is it overloaded?")
        if isinstance(exc, httpx.HTTPStatusError):
            code = exc.response.status_code
            hint = {401: "; set RAG_OPENAI_API_KEY to a key the server accepts", 403: "; check RAG_OPENAI_API_KEY",
                    404: "; check RAG_OPENAI_URL (it usually ends in /v1) and RAG_OPENAI_MODEL"}.get(code, "")
            return ModelError(f"{at} answered HTTP {code}: {_detail(exc.response)}{hint}")
        if isinstance(exc, httpx.TransportError):
            return ModelError(f"cannot reach the model server at {self.url}: {exc or type(exc).__name__}; "
                              "start it (e.g. `python -m rag serve-model`) or unset RAG_OPENAI_URL")
        return ModelError(f"{at} failed: {type(exc).__name__}: {exc}")

    def _body(self, messages: list[dict], max_tokens: int | None, **extra: Any) -> dict:
        messages = escaped_messages(messages)  # text is data: no chat-template control tokens
        return {"model": self.model, "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
                "max_tokens": int(max_tokens or self.settings.max_new_tokens), "temperature": 0, **extra}

    def _post(self, body: dict) -> dict:
        try:
            data = self._client.post(f"{self.url}/chat/completions", json=body).raise_for_status().json()
            data["choices"][0]  # noqa: B018 - shape check
            return data
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ModelError(f"the model server at {self.url} sent a malformed reply ({exc!r})") from exc
        except Exception as exc:
            raise self._fail(exc) from exc

    def load(self) -> "OpenAIGenerator":
        """Check that the server answers and accepts the key (``GET /models``; nothing loads)."""
        try:
            response = self._client.get(f"{self.url}/models", timeout=CONNECT_TIMEOUT * 2)
            if response.status_code != 404:  # a server without /models may still chat
                response.raise_for_status()
        except Exception as exc:
            raise self._fail(exc) from exc
        return self

    def count_tokens(self, messages: list[dict]) -> int:
        """Estimated prompt tokens (see the module docstring)."""
        return 2 + sum(TOKENS_PER_MESSAGE + math.ceil(len(m["content"]) / CHARS_PER_TOKEN) for m in messages)

    def stream(self, messages: list[dict], max_new_tokens: int | None = None) -> Iterator[str]:
        """Yield text pieces as they arrive. Closing the iterator early closes the
        connection, which stops the generation on servers that notice (serve-model does)."""
        t0, times, usage, finished = time.perf_counter(), [], {}, False
        try:
            with self._client.stream("POST", f"{self.url}/chat/completions",
                                     json=self._body(messages, max_new_tokens, stream=True)) as response:
                if response.status_code >= 400:
                    response.read()  # for the error message
                response.raise_for_status()
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, ": keep-alive" comments, "event:" lines
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        finished = True
                        break
                    if (event := _json(payload)) is None:
                        raise ModelError(f"the model server at {self.url} sent a malformed stream: {payload[:80]!r}")
                    if event.get("error"):
                        raise ModelError(f"the model server at {self.url} failed mid-answer: "
                                         f"{_error_text(event['error'])}")
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        finished = finished or bool(choice.get("finish_reason"))
                        if piece := (choice.get("delta") or {}).get("content"):
                            times.append(time.perf_counter())
                            yield piece
        except Exception as exc:
            raise self._fail(exc) from exc
        finally:  # new_tokens: the server's count if it sends usage, else content chunks
            n, span = int(usage.get("completion_tokens") or len(times)), times[-1] - times[0] if times else 0
            self.last_timing = TimingInfo(int(usage.get("prompt_tokens") or 0), times[0] - t0 if times else None,
                                          (n - 1) / span if n > 1 and span > 0 else None, n, time.perf_counter() - t0)
        if not finished:
            raise ModelError(f"the stream from the model server at {self.url} ended before the answer finished")

    def generate(self, messages: list[dict], max_new_tokens: int | None = None) -> str:
        """One non-streamed completion."""
        return _content(self._post(self._body(messages, max_new_tokens)))

    def yes_probability(self, messages: list[dict]) -> float:
        """P("Yes") / (P("Yes") + P("No")) for the next token of the reply (see above)."""
        if self._logprobs:
            try:
                data = self._post(self._body(messages, 1, logprobs=True, top_logprobs=TOP_LOGPROBS))
            except ModelError as exc:
                if getattr(getattr(exc.__cause__, "response", None), "status_code", None) not in (400, 422):
                    raise
                data = None  # logprobs refused: from now on, ask for the plain reply
            p = None if data is None else _yes_share(data)
            self._logprobs = p is not None
            if p is not None or data is not None:
                return _word_probability(_content(data)) if p is None else p
        return _word_probability(_content(self._post(self._body(messages, 1))))

    def close(self) -> None:
        self._client.close()


def _json(text: str) -> dict | None:
    try:
        return data if isinstance(data := json.loads(text), dict) else None
    except ValueError:
        return None


def _content(data: dict) -> str:
    return (data["choices"][0].get("message") or {}).get("content") or ""


def _yes_share(data: dict) -> float | None:
    """P(Yes) / (P(Yes) + P(No)) among the first token's top_logprobs (None: not reported)."""
    try:
        entry = data["choices"][0]["logprobs"]["content"][0]
        top = [(str(t["token"]).strip(), math.exp(float(t["logprob"]))) for t in entry.get("top_logprobs") or [entry]]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    p_yes, p_no = (sum(p for tok, p in top if tok in words) for words in (YES_WORDS, NO_WORDS))
    return p_yes / (p_yes + p_no) if p_yes + p_no > 0 else _word_probability(_content(data))


def _word_probability(text: str) -> float:
    word = text.split()[0].strip(".,!:;\"'") if text.split() else ""
    return 1.0 if word in YES_WORDS else 0.0 if word in NO_WORDS else 0.5


def _detail(response: httpx.Response) -> str:
    data = _json(response.text)
    return (" ".join(response.text.split())[:200] or response.reason_phrase) if data is None \
        else _error_text(data.get("error") or data.get("detail") or data)


def _error_text(error: Any) -> str:
    return str(error.get("message") or error if isinstance(error, dict) else error)[:200]
