"""The records that flow through the pipeline: papers in, sources and answers out.

Plain dataclasses, no behaviour beyond (de)serialisation and checking ``Filters``, so every
stage and every interface (Python, CLI JSON, Gradio API) speaks the same shapes.

>>> p = Paper(paper_id="pointer-networks", title="Pointer Networks", abstract="We ...")
>>> p.metadata()["title"]
'Pointer Networks'
"""

from __future__ import annotations

import calendar
import re
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from .errors import QuestionError


@dataclass(frozen=True)
class Paper:
    """One paper of the corpus (merged across every file it appeared in)."""

    paper_id: str
    title: str
    abstract: str
    n_authors: int | None = None
    published: str | None = None  # ISO date, YYYY-MM-DD, when the listing gave one
    upvotes: int | None = None
    authors: str | None = None  # names, when a user corpus gives them
    categories: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # the files the paper was read from
    url: str | None = None  # where to read it: the corpus's own link, else arXiv or doi.org
    doi: str | None = None
    arxiv_id: str | None = None

    @property
    def year(self) -> int | None:
        return int(self.published[:4]) if self.published else None

    def metadata(self) -> dict[str, Any]:
        """Flat metadata safe for Chroma (str/int/float only, no ``None``)."""
        meta: dict[str, Any] = {"paper_id": self.paper_id, "title": self.title}
        if self.n_authors is not None:
            meta["n_authors"] = self.n_authors
        if self.published:
            meta["published"] = self.published
            meta["year"] = self.year
        if self.upvotes is not None:
            meta["upvotes"] = self.upvotes
        if self.authors:
            meta["authors"] = self.authors
        if self.categories:
            meta["categories"] = " ".join(self.categories)
        if self.sources:
            meta["source_files"] = ", ".join(self.sources)
        for key in ("url", "doi", "arxiv_id"):
            if getattr(self, key):
                meta[key] = getattr(self, key)
        return meta

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Source:
    """A retrieved paper, numbered as the answer cites it (``[number]``)."""

    number: int
    paper_id: str
    title: str
    score: float  # fused relevance (higher is better)
    text: str  # the best-matching chunk
    abstract: str  # the whole abstract, for evidence selection and display
    metadata: dict[str, Any] = field(default_factory=dict)
    similarity: float | None = None  # cosine similarity of the best chunk, when dense ran

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Citation:
    """A source that the final answer cites, with the abstract sentences backing it."""

    number: int
    paper_id: str
    title: str
    evidence: list[str]  # sentences of the abstract that support the answer

    @property
    def supporting_sentence(self) -> str:
        return self.evidence[0] if self.evidence else ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["supporting_sentence"] = self.supporting_sentence
        return d


@dataclass
class AnswerSentence:
    """One sentence of an answer and the verdict of citation verification."""

    text: str
    citations: list[int]  # source numbers, after verification
    support: float  # 0..1, how well the cited sources support it
    supported: bool
    evidence: dict[int, list[str]] = field(default_factory=dict)  # source -> sentences

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["evidence"] = {str(k): v for k, v in self.evidence.items()}
        return d


#: The three outcomes of a question (``Answer.outcome``).
ANSWERED = "answered"  # a verified answer, every sentence cited
RELATED = "related"  # related papers found, but no answer could be verified: their best evidence is shown
NOT_FOUND = "not_found"  # nothing relevant retrieved, or the evidence does not settle the question
OUTCOMES = (ANSWERED, RELATED, NOT_FOUND)


@dataclass
class Answer:
    """What ``Pipeline.ask`` returns.

    ``outcome`` is one of ``OUTCOMES``; ``refused`` is true for both that are not an answer
    (``related`` and ``not_found``). A ``related`` answer's ``text`` quotes the closest
    evidence sentences, cited, and says that they were not verified as an answer;
    ``citations`` hold those sentences.
    """

    question: str
    text: str
    refused: bool
    refusal_reason: str = ""  # why, when refused (nothing retrieved, nothing verified, ...)
    citations: list[Citation] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    sentences: list[AnswerSentence] = field(default_factory=list)
    standalone_question: str = ""
    raw_text: str = ""  # the model's output before verification
    timings: dict[str, float] = field(default_factory=dict)
    model: str = ""
    device: str = ""
    confidence: float | None = None  # P(answerable) from the refusal classifier, when it ran
    signals: dict[str, float] = field(default_factory=dict)  # the classifier's inputs
    disagreement: list[int] = field(default_factory=list)  # two sources giving different values
    withheld: list[Source] = field(default_factory=list)  # retrieved, but their abstracts instruct the reader
    outcome: str = ""  # one of OUTCOMES; derived from ``refused`` when not given

    def __post_init__(self) -> None:
        if not self.outcome:
            self.outcome = NOT_FOUND if self.refused else ANSWERED
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {self.outcome!r}")

    @property
    def cited_paper_ids(self) -> list[str]:
        return [c.paper_id for c in self.citations]

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "standalone_question": self.standalone_question,
            "text": self.text,
            "refused": self.refused,
            "outcome": self.outcome,
            "refusal_reason": self.refusal_reason,
            "citations": [c.to_dict() for c in self.citations],
            "sources": [s.to_dict() for s in self.sources],
            "sentences": [s.to_dict() for s in self.sentences],
            "raw_text": self.raw_text,
            "timings": self.timings,
            "model": self.model,
            "device": self.device,
            "confidence": self.confidence,
            "signals": self.signals,
            "disagreement": self.disagreement,
            "withheld": [s.to_dict() for s in self.withheld],
        }


@dataclass(frozen=True)
class Token:
    """A streamed piece of generated text (``Pipeline.stream`` yields these, then an Answer)."""

    text: str


@dataclass(frozen=True)
class Status:
    """A progress note while streaming ("searching", "generating", "verifying")."""

    stage: str
    detail: str = ""


@dataclass(frozen=True)
class Filters:
    """Optional restrictions on which papers may be retrieved; every one given must hold.
    Checked here, once, for every interface (a ``QuestionError`` saying what to type).

    ``categories`` and ``authors`` match papers listing *any* of the values (a paper may
    have several, e.g. "cs.LG stat.ML"); categories ignore case, author names ignore case,
    accents and punctuation. A plain string is accepted for either. Dates take
    ``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY`` (``date_from="2021", date_to="2021"`` is the
    year 2021; surrounding spaces and empty strings are ignored); papers without a date
    drop out.

    >>> f = Filters(categories="cs.LG stat.ML", authors="A. Name", date_from="2021")
    >>> f.categories, f.authors, f.is_empty(), f.first_day, f.last_day
    (('cs.LG', 'stat.ML'), ('A. Name',), False, 20210101, None)
    """

    paper_ids: tuple[str, ...] = ()
    date_from: str | None = None  # inclusive
    date_to: str | None = None  # inclusive
    categories: tuple[str, ...] = ()  # any of these
    authors: tuple[str, ...] = ()  # any of these names

    def __post_init__(self) -> None:
        cats = (self.categories,) if isinstance(self.categories, str) else self.categories
        object.__setattr__(self, "categories",  # "cs.LG stat.ML" or "cs.LG,stat.ML": two
                           tuple(c for item in cats for c in item.replace(",", " ").split()))
        if isinstance(self.authors, str):
            object.__setattr__(self, "authors", (self.authors,))
        for name in ("paper_ids", "authors"):  # lists from callers stay hashable
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.authors and not any(_NAME_LETTERS.search(a) for a in self.authors):
            raise QuestionError("The author filter is empty; type an author's name.")
        for name in ("date_from", "date_to"):
            object.__setattr__(self, name, (getattr(self, name) or "").strip() or None)
        start, end = self.first_day, self.last_day
        if start is not None and end is not None and start > end:
            raise QuestionError(f"The date range is reversed: from {self.date_from} is after to "
                                f"{self.date_to}; swap them.")

    def is_empty(self) -> bool:
        return not (self.paper_ids or self.date_from or self.date_to or self.categories
                    or self.authors)

    @property
    def first_day(self) -> int | None:
        """``date_from`` as a number (20230501), its first day for a year or a month."""
        return date_number(self.date_from, end=False) if self.date_from else None

    @property
    def last_day(self) -> int | None:
        """``date_to`` as a number, its last day for a year or a month."""
        return date_number(self.date_to, end=True) if self.date_to else None


_NAME_LETTERS = re.compile(r"[^\W_]")


def date_number(value: str, end: bool) -> int:
    """``2023-05-01`` → 20230501; a bare year or ``YYYY-MM`` is its first (or, as an end,
    last) day: ``date_number("2024-02", end=True)`` is 20240229. ``QuestionError`` when it is
    not a date, saying why (``2023-02-30``: the day is out of range for the month)."""
    text = value.strip()
    if len(text) == 8 and text.isdigit():  # 20230501
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    parts = text.split("-")
    if not (all(p.isdigit() for p in parts) and len(parts[0]) == 4 and len(parts) <= 3):
        raise QuestionError(f"Date filter {value!r} is not a date; use YYYY-MM-DD, YYYY-MM or YYYY.")
    year, month, day = (int(p) for p in parts + ["0"] * (3 - len(parts)))
    try:
        month = month or (12 if end else 1)
        day = day or (calendar.monthrange(year, month)[1] if end else 1)
        found = date(year, month, day)
    except ValueError as exc:  # the calendar's words, e.g. "day is out of range for month"
        raise QuestionError(f"Date filter {value!r} is not a date ({exc}); use YYYY-MM-DD, YYYY-MM "
                            "or YYYY.") from None
    return found.year * 10000 + found.month * 100 + found.day
