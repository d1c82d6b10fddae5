"""The REST API served with the app (``python app.py`` or ``citewise app``), beside the chat,
for scripts and services; its OpenAPI documentation is at ``/api/docs``.

- ``POST /api/ask``: the verified answer, streamed as server-sent events: ``status`` events
  (searching, loading, generating, verifying), ``token`` events (the draft as it is written),
  then one ``answer`` event (``Answer.to_dict()``: the text, citations with their supporting
  sentences, the refusal flag). ``"stream": false`` returns that answer as plain JSON.
- ``GET /api/search?q=...``: the best-matching papers (no model involved).
- ``GET /api/papers`` (``?contains=`` filters titles and abstracts) and ``GET /api/papers/{id}``.

When the app has a login (``CITEWISE_USER``/``CITEWISE_PASSWORD``) every endpoint takes the
same user and password, as HTTP basic auth (``curl -u user:password``), with the same lockout
after repeated wrong passwords. A bad request gets status 422 and ``{"detail": "what to do"}``.
"""

import json
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field

from .errors import QuestionError, RagError
from .types import Answer, Filters, Status, Token

if TYPE_CHECKING:  # pragma: no cover
    from .ui import ChatUI, Login

__all__ = ["AskRequest", "create_api"]

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "bm25"]


class Message(BaseModel):
    """One earlier turn of a conversation, for a follow-up question."""

    role: Literal["user", "assistant"]
    content: str


class AskRequest(BaseModel):
    """A question, with what the app's settings panel offers."""

    model_config = {"extra": "forbid", "json_schema_extra": {
        "examples": [{"question": "What BLEU score does the Transformer reach on WMT 2014 English-German?"}]}}

    question: str = Field(description="The question, in plain language.")
    k: int | None = Field(None, ge=1, le=50, description="Papers to retrieve (default: the server's setting).")
    mode: Mode | None = Field(None, description="Retrieval: hybrid, dense or bm25 (default: the server's).")
    date_from: str | None = Field(None, description="Only papers published on or after this date (YYYY or YYYY-MM-DD).")
    date_to: str | None = Field(None, description="Only papers published on or before this date (YYYY or YYYY-MM-DD).")
    history: list[Message] = Field(default_factory=list, description="Earlier turns, oldest first, when this is a follow-up.")
    stream: bool = Field(True, description="Stream server-sent events (true) or return the answer as JSON (false).")


ANSWER_DOC = ("The verified answer (`text`, `refused`, `outcome`, `citations` with `supporting_sentence`, "
              "`sources`, `timings`).")
STREAM_DOC = ("With `stream` (the default): `text/event-stream` of `status` events (`{\"stage\", \"detail\"}`), "
              "`token` events (`{\"text\"}`: the draft), then one `answer` event with the verified answer; "
              "an `error` event (`{\"detail\"}`) if answering fails midway.")


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status_code=422, detail=message)


def sse(event: str, data: Any) -> str:
    """One server-sent event: ``event: NAME`` and its JSON ``data`` (one line)."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def create_api(ui: "ChatUI", login: "Login | None" = None) -> FastAPI:
    """The API over the app's handlers ``ui`` (a ``rag.ui.ChatUI``: its pipeline views, and
    its ``ready`` event, which questions wait for while the app is still loading). ``login``:
    the app's ``rag.ui.Login``, or ``None`` for no login. Mount the Gradio app on the
    returned ``FastAPI`` after it (``gr.mount_gradio_app(api, demo, path="/")``)."""
    from .ui import check_k, question_problem

    basic = HTTPBasic(auto_error=False, description="The app's login (CITEWISE_USER / CITEWISE_PASSWORD).")

    def authorised(credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)]) -> None:
        if login is None:
            return
        if credentials is None or not login(credentials.username, credentials.password):
            raise HTTPException(status_code=401, detail="Log in with the app's user and password "
                                "(HTTP basic auth: curl -u USER:PASSWORD).",
                                headers={"WWW-Authenticate": 'Basic realm="citewise"'})

    api = FastAPI(
        title="citewise", version=_version(), docs_url="/api/docs", redoc_url=None,
        openapi_url="/api/openapi.json", dependencies=[Depends(authorised)],
        description="Cited answers from research-paper abstracts, or an honest refusal. "
        "The chat app is at `/`.",
    )

    def wait_ready() -> None:
        if ui.ready is not None:
            ui.ready.wait()

    def filters(date_from: str | None, date_to: str | None, **more: Any) -> Filters:
        try:
            return Filters(date_from=date_from, date_to=date_to, **more)
        except QuestionError as exc:
            raise _unprocessable(str(exc)) from None

    @api.post("/api/ask", summary="Answer a question, every claim cited",
              responses={200: {"description": f"{STREAM_DOC} Without: {ANSWER_DOC}",
                               "content": {"text/event-stream": {}, "application/json": {}}}})
    def ask(request: AskRequest):  # noqa: ANN202 - FastAPI would read a return type as a response model
        problem = question_problem(request.question)
        if problem:
            raise _unprocessable(problem)
        chosen = filters(request.date_from, request.date_to)
        history = [m.model_dump() for m in request.history]
        if not request.stream:
            wait_ready()
            try:
                answer = ui.pipeline.ask(request.question, history=history, filters=chosen,
                                         k=request.k, mode=request.mode)
                return answer.to_dict()
            except RagError as exc:
                raise _unprocessable(str(exc)) from None
        return StreamingResponse(_events(ui, wait_ready, request, history, chosen), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.get("/api/search", summary="The papers that best match a query (no model involved)")
    def search(
        q: Annotated[str, Query(description="What to look for.")],
        k: Annotated[int | None, Query(ge=1, le=50, description="Papers to return.")] = None,
        mode: Annotated[Mode | None, Query(description="hybrid, dense or bm25.")] = None,
        author: Annotated[list[str] | None, Query(description="Only papers by this author (repeat: any of them).")] = None,
        category: Annotated[list[str] | None, Query(description="Only papers in this category, e.g. cs.LG.")] = None,
        date_from: Annotated[str | None, Query(description="YYYY or YYYY-MM-DD.")] = None,
        date_to: Annotated[str | None, Query(description="YYYY or YYYY-MM-DD.")] = None,
    ) -> list[dict[str, Any]]:
        problem = question_problem(q)
        if problem:
            raise _unprocessable(problem.replace("question", "query"))
        chosen = filters(date_from, date_to, authors=tuple(author or ()), categories=tuple(category or ()))
        wait_ready()
        try:
            return [s.to_dict() for s in ui.pipeline.search(q, k=check_k(k), mode=mode, filters=chosen)]
        except RagError as exc:
            raise _unprocessable(str(exc)) from None

    @api.get("/api/papers", summary="The indexed papers")
    def papers(
        contains: Annotated[str | None, Query(description="Only papers whose title or abstract contains this text.")] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        wait_ready()
        listed = ui.matching_papers(contains)
        return {"total": len(listed), "offset": offset,
                "papers": [p.to_dict() for p in listed[offset:offset + limit]]}

    @api.get("/api/papers/{paper_id}", summary="One indexed paper, with its abstract")
    def paper(paper_id: str) -> dict[str, Any]:
        wait_ready()
        found = next((p for p in ui.papers() if p.paper_id == paper_id), None)
        if found is None:
            raise HTTPException(status_code=404, detail=f"No indexed paper has the id {paper_id!r}; "
                                "GET /api/papers lists them with their ids.")
        return found.to_dict()

    return api


def _events(ui: "ChatUI", wait_ready: Callable[[], None], request: AskRequest, history: list,
            chosen: Filters) -> Iterator[str]:
    """The server-sent events of one answer (run by the server in a worker thread; a client
    that goes away closes this generator, which stops the generation)."""
    try:
        if ui.ready is not None and not ui.ready.is_set():
            yield sse("status", {"stage": "loading", "detail": "the index and models are loading"})
        wait_ready()
        events = ui.pipeline.stream(request.question, history=history, filters=chosen,
                                    k=request.k, mode=request.mode)
        for event in events:
            if isinstance(event, Token):
                yield sse("token", {"text": event.text})
            elif isinstance(event, Status):
                yield sse("status", {"stage": event.stage, "detail": event.detail})
            elif isinstance(event, Answer):
                yield sse("answer", event.to_dict())
    except RagError as exc:
        yield sse("error", {"detail": str(exc)})
    except Exception:  # noqa: BLE001 - the stream has started: say it failed, log why
        log.exception("unexpected error while answering over the REST API")
        yield sse("error", {"detail": "Something went wrong on the server (details are in its log). "
                            "Please try again."})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("citewise")
    except PackageNotFoundError:
        return "0"

