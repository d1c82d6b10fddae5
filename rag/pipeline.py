"""The question-answering pipeline: question → papers → evidence → draft → verified answer.

``Pipeline`` is the Python API behind the CLI and the app::

    pipeline = Pipeline(Settings())
    answer = pipeline.ask("Which model reaches 28.4 BLEU?")
    for event in pipeline.stream("and how fast is it?", history=[...]):
        ...  # Status and Token events, then the final Answer

Each stage lives in its own module; this one only wires them together and times them.
The index, the embedder and the model load lazily, once, and are shared by every call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from .citations import citations_removed, verify_answer
from .config import Settings
from .conversation import clean_question, standalone_question
from .evidence import pool_evidence
from .prompts import NOT_FOUND, REFUSAL, answer_messages, judge_messages
from .retrieval import Filters, Retriever
from .short_answers import expand_short_answer, yes_no_evidence
from .types import Answer, Source, Status, Token

Event = Status | Token | Answer


class Pipeline:
    """Retrieval-augmented, citation-verified question answering over the index."""

    def __init__(
        self,
        settings: Settings | None = None,
        generator: Any = None,
        embedder: Any = None,
        index: Any = None,
    ):
        self.settings = settings or Settings()
        self._generator = generator
        self._embedder = embedder
        self._index = index
        self._retriever: Retriever | None = None
        self._lock = threading.Lock()

    # --- lazily built parts ----------------------------------------------------------------
    @property
    def index(self):  # noqa: ANN201
        with self._lock:
            if self._index is None:
                from .store import PaperIndex

                self._index = PaperIndex(self.settings, embedder=self._embedder)
            return self._index

    @property
    def retriever(self) -> Retriever:
        index = self.index
        with self._lock:
            if self._retriever is None:
                self._retriever = Retriever(index, self.settings, self._embedder)
            return self._retriever

    @property
    def generator(self):  # noqa: ANN201
        with self._lock:
            if self._generator is None:
                from .generation import make_generator

                self._generator = make_generator(self.settings)
            return self._generator

    def warm_up(self, model: bool = True) -> None:
        """Load the index, embedder and (unless ``model=False``) the generator now rather
        than on the first question."""
        self.retriever.embed_query("warm up")
        self.retriever.bm25("warm up", 1, Filters())
        load = getattr(self.generator, "load", None) if model else None
        if load:
            load()

    # --- API ---------------------------------------------------------------------------------
    def search(
        self, query: str, k: int | None = None, filters: Filters | None = None, mode: str | None = None
    ) -> list[Source]:
        """The best-matching papers for ``query`` (no model involved)."""
        return self.retriever.search(clean_question(query), k=k, mode=mode, filters=filters)

    def ask(
        self, question: str, history: Sequence[Any] | None = None, filters: Filters | None = None
    ) -> Answer:
        """Answer ``question`` from the indexed abstracts (blocking)."""
        answer = None
        for event in self.stream(question, history=history, filters=filters):
            if isinstance(event, Answer):
                answer = event
        assert answer is not None
        return answer

    def stream(
        self, question: str, history: Sequence[Any] | None = None, filters: Filters | None = None
    ) -> Iterator[Event]:
        """Yield ``Status`` and ``Token`` events while answering, then the final ``Answer``."""
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        question = clean_question(question)
        query = standalone_question(question, history)
        yield Status("searching", query)
        sources = self.retriever.search(query, filters=filters)
        timings["retrieval"] = time.perf_counter() - t0

        def finish(answer: Answer) -> Answer:
            answer.standalone_question = query
            timings["total"] = time.perf_counter() - t0
            answer.timings = {k: round(v, 3) for k, v in timings.items()}
            return answer

        if not self._relevant(sources):
            yield finish(self._refusal(question, sources, "nothing relevant retrieved"))
            return

        lines = pool_evidence(query, sources, self.settings.evidence_sentences)
        messages = answer_messages(query, lines)
        generator = self.generator
        if not getattr(generator, "is_loaded", True):  # e.g. the app still loading it
            yield Status("loading", generator.name)
        yield Status("generating", generator.name)
        t1 = time.perf_counter()
        pieces: list[str] = []
        for piece in generator.stream(messages, self.settings.max_new_tokens):
            if not pieces:
                timings["first_token"] = time.perf_counter() - t0
            pieces.append(piece)
            yield Token(piece)
        timings["generation"] = time.perf_counter() - t1
        draft = "".join(pieces).strip()

        yield Status("verifying", "")
        t2 = time.perf_counter()
        if not draft or NOT_FOUND in draft.upper():
            answer = self._refusal(question, sources, "the model found no answer")
        else:
            verified = self._verify(expand_short_answer(draft, query, lines), sources)
            if not verified.kept_text.strip() and (fallback := yes_no_evidence(draft, query, lines)):
                verified = self._verify(fallback, sources)
            if not verified.citations or not verified.kept_text.strip():
                answer = self._refusal(question, sources, "no sentence survived verification")
            elif self._off_question(query, verified.kept_text):
                answer = self._refusal(question, sources, "the answer does not address the question")
            else:
                answer = Answer(
                    question=question,
                    text=verified.kept_text,
                    refused=False,
                    citations=verified.citations,
                    sources=sources,
                    sentences=verified.sentences,
                )
            answer.sentences = verified.sentences
        answer.raw_text = draft
        answer.model, answer.device = generator.name, generator.device
        timings["verification"] = time.perf_counter() - t2
        yield finish(answer)

    def messages_for(self, question: str, sources: list[Source]) -> list[dict]:
        """The exact chat messages the model gets for ``question`` over ``sources``."""
        return answer_messages(question, pool_evidence(question, sources, self.settings.evidence_sentences))

    # --- helpers -------------------------------------------------------------------------------
    def _relevant(self, sources: list[Source]) -> bool:
        if not sources:
            return False
        sims = [s.similarity for s in sources if s.similarity is not None]
        return not sims or max(sims) >= self.settings.min_similarity

    def _verify(self, text: str, sources: list[Source]):  # noqa: ANN202
        return verify_answer(text, sources, self.settings.min_support, embed=self._embed(),
                             judge=self._judge())

    def _off_question(self, question: str, answer: str) -> bool:
        """True when the answer's similarity to the question is below the setting."""
        if not self.settings.semantic_support:
            return False
        import numpy as np

        q, a = np.asarray(self.retriever.embed_texts([question, citations_removed(answer)]))
        cosine = float(q @ a / max(np.linalg.norm(q) * np.linalg.norm(a), 1e-12))
        return cosine < self.settings.min_answer_relevance

    def _refusal(self, question: str, sources: list[Source], reason: str) -> Answer:
        return Answer(
            question=question, text=REFUSAL, refused=True, refusal_reason=reason, sources=sources
        )

    def _embed(self):  # noqa: ANN202
        if not self.settings.semantic_support:
            return None
        retriever = self.retriever
        return lambda texts: retriever.embed_texts(list(texts))

    def _judge(self):  # noqa: ANN202
        if self.settings.judge != "generator":
            return None
        generator = self.generator

        def judge(claim: str, evidence: str) -> float:
            return generator.yes_probability(judge_messages(claim, evidence))

        return judge
