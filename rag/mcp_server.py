"""An MCP server over stdio (``python -m rag mcp``): the index for MCP clients.

Tools:

* ``search_papers(query, k)``: the best-matching papers (no model involved);
* ``ask(question)``: the verified answer, its citations and their supporting sentences, or a
  refusal (``refused``) when the papers don't answer.

Resources: ``citewise://papers`` lists the indexed papers; ``citewise://papers/{paper_id}`` is
one paper's title, metadata and abstract (Markdown).

The pipeline (index, embedder, generator) is built on first use and shared by every call of
the process; the generator loads only when ``ask`` first needs it. Stdout carries the protocol
alone: progress bars are off and logs go to stderr. A user error (``RagError``: an empty
question, a missing index, ...) reaches the client as a tool or resource error carrying its
message, never as a traceback.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from .config import Settings
from .conversation import MAX_QUESTION_CHARS
from .errors import RagError

if TYPE_CHECKING:
    from .pipeline import Pipeline
    from .types import Answer, Source

__all__ = ["AskResult", "SearchResult", "build_server", "paper_uri", "serve"]

NAME = "citewise"
PAPERS_URI = "citewise://papers"
INSTRUCTIONS = (
    "Answers questions from the abstracts of the indexed research papers. `ask` returns an "
    "answer whose every sentence is verified against the cited abstracts, or refused=true when "
    "the papers don't answer; `search_papers` finds papers without generating anything. Read "
    f"{PAPERS_URI} for the list of papers and {PAPERS_URI}/{{paper_id}} for one abstract."
)


def paper_uri(paper_id: str) -> str:
    """The resource URI of one paper (its id percent-encoded: ids may hold ``/``)."""
    return f"{PAPERS_URI}/{quote(paper_id, safe='')}"


# --- structured results ------------------------------------------------------------------
class PaperHit(BaseModel):
    """One paper found by ``search_papers``."""

    number: int = Field(description="Rank, from 1.")
    paper_id: str
    title: str
    score: float = Field(description="Fused relevance (higher is better).")
    text: str = Field(description="The best-matching passage of the abstract.")
    url: str | None = Field(default=None, description="Where to read the paper, when the corpus gives it.")
    doi: str | None = None
    published: str | None = Field(default=None, description="ISO date, when known.")
    uri: str = Field(description="The paper's resource (title, metadata, abstract).")


class SearchResult(BaseModel):
    """What ``search_papers`` returns."""

    query: str
    papers: list[PaperHit]


class CitationOut(BaseModel):
    """A paper that the answer cites as ``[number]``."""

    number: int
    paper_id: str
    title: str
    url: str | None = None
    supporting_sentence: str = Field(description="The abstract's sentence that supports the claim, verbatim.")
    evidence: list[str] = Field(default_factory=list, description="Every supporting sentence, verbatim.")


class AskResult(BaseModel):
    """What ``ask`` returns."""

    question: str
    answer: str = Field(description="The answer with [n] citation markers, or the refusal.")
    refused: bool = Field(description="True when the papers don't answer the question.")
    outcome: str = Field(description="answered, related (related papers, no verified answer) or not_found.")
    refusal_reason: str = ""
    citations: list[CitationOut]


def search_result(query: str, sources: list[Source]) -> SearchResult:
    def hit(s: Source) -> PaperHit:
        meta = s.metadata or {}
        return PaperHit(number=s.number, paper_id=s.paper_id, title=s.title, score=round(s.score, 4),
                        text=s.text, url=meta.get("url"), doi=meta.get("doi"),
                        published=meta.get("published"), uri=paper_uri(s.paper_id))

    return SearchResult(query=query, papers=[hit(s) for s in sources])


def ask_result(answer: Answer) -> AskResult:
    urls = {s.number: (s.metadata or {}).get("url") for s in answer.sources}
    citations = [CitationOut(number=c.number, paper_id=c.paper_id, title=c.title, url=urls.get(c.number),
                             supporting_sentence=c.supporting_sentence, evidence=list(c.evidence))
                 for c in answer.citations]
    return AskResult(question=answer.question, answer=answer.text, refused=answer.refused,
                     outcome=answer.outcome, refusal_reason=answer.refusal_reason, citations=citations)


def search_text(result: SearchResult) -> str:
    if not result.papers:
        return "No paper matches."
    lines = []
    for p in result.papers:
        lines.append(f"[{p.number}] {p.title}  (id {p.paper_id}, score {p.score:.2f})"
                     + (f"  <{p.url}>" if p.url else ""))
        lines.append(f"    {' '.join(p.text.split())}")
    return "\n".join(lines)


def paper_markdown(meta: dict[str, Any]) -> str:
    """One paper as Markdown: title, metadata list, abstract."""
    from .store import paper_from_metadata

    paper = paper_from_metadata(meta)
    facts = [("id", paper.paper_id), ("published", paper.published), ("authors", paper.authors),
             ("number of authors", paper.n_authors), ("categories", " ".join(paper.categories) or None),
             ("url", paper.url), ("doi", paper.doi), ("arXiv", paper.arxiv_id)]
    lines = [f"# {paper.title}", ""]
    lines += [f"- {label}: {value}" for label, value in facts if value not in (None, "")]
    lines += ["", "## Abstract", "", paper.abstract.strip()]
    return "\n".join(lines) + "\n"


# --- the server ------------------------------------------------------------------------------
class Citewise:
    """The pipeline of one server process, built on first use and shared by every call."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pipeline: Pipeline | None = None
        self._lock = threading.Lock()

    @property
    def pipeline(self) -> Pipeline:
        with self._lock:
            if self._pipeline is None:
                from .pipeline import Pipeline

                self._pipeline = Pipeline(self.settings)  # index, embedder, model: lazy inside
            return self._pipeline


@contextmanager
def user_errors(error: type[Exception]) -> Iterator[None]:
    """``RagError`` (a damaged index included: the store translates Chroma's failures)
    re-raised as ``error`` with a user-facing message, so the client gets the message and the
    server keeps running."""
    try:
        yield
    except RagError as exc:
        raise error(str(exc)) from None


def build_server(settings: Settings) -> MCPServer:
    """The MCP server over ``settings``' index (nothing is loaded until a call needs it)."""
    state = Citewise(settings)
    server = MCPServer(NAME, instructions=INSTRUCTIONS, log_level="WARNING")
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only)
    def search_papers(
        query: Annotated[str, Field(description="What to look for: a question or a few words.")],
        k: Annotated[int, Field(ge=1, le=50, description="How many papers to return.")] = 5,
    ) -> Annotated[CallToolResult, SearchResult]:
        """The papers whose abstracts best match the query, best first, with the matching
        passage of each (retrieval only: no model, nothing generated)."""
        if not query.strip():
            raise ToolError("The search query is empty; give a few words or a question to search for.")
        with user_errors(ToolError):
            result = search_result(query, state.pipeline.search(query, k=k))
        return CallToolResult(content=[TextContent(type="text", text=search_text(result))],
                              structured_content=result.model_dump(mode="json"))

    @server.tool(annotations=read_only)
    def ask(
        question: Annotated[str, Field(description=f"A question about the papers, in plain language "
                                                   f"(under {MAX_QUESTION_CHARS:,} characters).")],
    ) -> Annotated[CallToolResult, AskResult]:
        """Answer a question from the indexed abstracts. Every sentence of the answer cites
        the papers it comes from ([n]) and is verified against their abstracts; each citation
        quotes its supporting sentence. When the papers don't answer, refused is true and
        nothing is made up. The first call loads the local model (slow on a CPU)."""
        from .export import to_markdown

        with user_errors(ToolError):
            answer = state.pipeline.ask(question)
        return CallToolResult(content=[TextContent(type="text", text=to_markdown(answer))],
                              structured_content=ask_result(answer).model_dump(mode="json"))

    @server.resource(PAPERS_URI, name="papers", title="Indexed papers", mime_type="application/json")
    def papers() -> str:
        """Every indexed paper: id, title, date and its resource URI."""
        with user_errors(ResourceError):
            listed = state.pipeline.index.papers()
        return json.dumps([{"paper_id": p.paper_id, "title": p.title, "published": p.published,
                            "uri": paper_uri(p.paper_id)} for p in listed], ensure_ascii=False, indent=1)

    @server.resource(PAPERS_URI + "/{paper_id}", name="paper", title="A paper's abstract",
                     mime_type="text/markdown")
    def paper(paper_id: str) -> str:
        """One paper: its title, metadata (date, authors, link) and abstract."""
        with user_errors(ResourceError):
            found = state.pipeline.index.abstracts([paper_id]).get(paper_id)
        if found is None:
            raise ResourceNotFoundError(
                f"No paper with id {paper_id!r} in the index. Read {PAPERS_URI} for the ids, or "
                "find papers with the search_papers tool.")
        return paper_markdown(found)

    return server


def serve(settings: Settings) -> None:
    """Serve MCP over stdio until the client closes the connection."""
    from .console import set_quiet

    set_quiet(True)  # stdout is the transport: no progress bar may reach it
    build_server(settings).run("stdio")
