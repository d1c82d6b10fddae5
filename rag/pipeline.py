"""The question-answering pipeline: question → papers → evidence → draft → verified lead →
composed answer → answer or refuse.

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
from typing import TYPE_CHECKING, Any

from .answer_checks import QuestionShape, has_value
from .citations import Judge, Verified, citations_removed, verify_answer
from .composition import candidates, compose, lead_sentences, marked, rival
from .config import Settings
from .conversation import (clean_question, follow_up_focus, follow_up_subject, previous_answer, repeats,
                           standalone_question)
from .embedding import Embedder
from .evidence import Embed, cached_embed, pool_evidence
from .injection import trusted_sources
from .prompts import DISAGREEMENT, NOT_FOUND, REFUSAL, RELATED, answer_messages, judge_messages
from .refusal import RefusalModel, load_refusal_model, rarest_missing, weighted_coverage
from .retrieval import Retriever
from .sentences import content_terms
from .short_answers import expand_short_answer, yes_no_evidence
from .types import NOT_FOUND as NOT_IN_PAPERS
from .types import RELATED as RELATED_ONLY
from .types import Answer, Filters, Source, Status, Token

if TYPE_CHECKING:  # pragma: no cover
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from .generation import Generator
    from .store import PaperIndex

Event = Status | Token | Answer
RELATED_SENTENCES = 2  # evidence sentences quoted when papers are related but nothing was verified
RELATED_SHARE = 0.8  # a second sentence is quoted when it scores this share of the best


class Pipeline:
    """Retrieval-augmented, citation-verified question answering over the index."""

    def __init__(
        self,
        settings: Settings | None = None,
        generator: Generator | None = None,
        embedder: Embedder | BaseEmbedding | None = None,
        index: PaperIndex | None = None,
    ):
        self.settings = settings or Settings()
        self._generator = generator
        if embedder is None and index is not None:
            embedder = index.embedder
        self.embedder = Embedder.of(self.settings, embedder)  # the index's, the retriever's, verification's
        self._index = index
        self._retriever: Retriever | None = None
        self._refusal_model: RefusalModel | None | bool = None
        self._lock = threading.Lock()

    # --- lazily built parts ----------------------------------------------------------------
    @property
    def index(self) -> PaperIndex:
        with self._lock:
            if self._index is None:
                from .store import PaperIndex

                self._index = PaperIndex(self.settings, embedder=self.embedder)
            return self._index

    @property
    def retriever(self) -> Retriever:
        index = self.index
        with self._lock:
            if self._retriever is None:
                self._retriever = Retriever(index, self.settings, self.embedder)
            return self._retriever

    @property
    def generator(self) -> Generator:
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
        if model:
            self.generator.load()

    # --- API ---------------------------------------------------------------------------------
    def search(
        self, query: str, k: int | None = None, filters: Filters | None = None, mode: str | None = None
    ) -> list[Source]:
        """The best-matching papers for ``query`` (no model involved)."""
        return self.retriever.search(clean_question(query), k=k, mode=mode, filters=filters)

    def ask(
        self, question: str, history: Sequence[Any] | None = None, filters: Filters | None = None,
        *, k: int | None = None, mode: str | None = None,
    ) -> Answer:
        """Answer ``question`` from the indexed abstracts (blocking); ``stream`` says how."""
        answer = None
        for event in self.stream(question, history=history, filters=filters, k=k, mode=mode):
            if isinstance(event, Answer):
                answer = event
        assert answer is not None
        return answer

    def stream(
        self, question: str, history: Sequence[Any] | None = None, filters: Filters | None = None,
        *, k: int | None = None, mode: str | None = None,
    ) -> Iterator[Event]:
        """Yield ``Status`` and ``Token`` events while answering, then the final ``Answer``.
        The answer draws on the ``k`` best papers (default ``settings.top_k``) found in
        retrieval ``mode`` (default ``settings.retrieval_mode``) that pass ``filters``."""
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        question = clean_question(question)
        query = standalone_question(question, history)
        yield Status("searching", query)
        sources, withheld = trusted_sources(self.retriever.search(query, k=k, mode=mode, filters=filters))
        timings["retrieval"] = time.perf_counter() - t0

        def finish(answer: Answer) -> Answer:
            answer.standalone_question = query
            answer.withheld = withheld
            timings["total"] = time.perf_counter() - t0
            answer.timings = {k: round(v, 3) for k, v in timings.items()}
            return answer

        if not self._relevant(sources):
            yield finish(self._refusal(question, sources, "nothing relevant retrieved"))
            return

        focus = follow_up_focus(query, follow_up_subject(question, history))
        lines = pool_evidence(focus, sources, self.settings.evidence_sentences)
        messages = answer_messages(query, lines)
        generator = self.generator
        if not generator.is_loaded:  # e.g. the app still loading it
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
        answer = self._answer(question, query, draft, lines, sources, focus)
        previous = previous_answer(history)
        if previous and not answer.refused and repeats(answer.text, previous):
            answer = self._related(question, query, sources, self._question_embed(),
                                   "the answer only repeats the previous answer", said=previous)
        answer.raw_text = draft
        answer.model, answer.device = generator.name, generator.device
        timings["verification"] = time.perf_counter() - t2
        yield finish(answer)

    def messages_for(self, question: str, sources: list[Source]) -> list[dict]:
        """The exact chat messages the model gets for ``question`` over ``sources``."""
        return answer_messages(question, pool_evidence(question, sources, self.settings.evidence_sentences))

    # --- helpers -------------------------------------------------------------------------------
    def _answer(self, question: str, query: str, draft: str, lines: list[tuple[int, str]],
                sources: list[Source], focus: str | None = None) -> Answer:
        """Verify the draft, compose the answer around it, then answer or refuse. ``focus``:
        what the sentences of the answer must be about (``follow_up_focus``), by default
        ``query``."""
        focus = focus or query
        degenerate = not draft or NOT_FOUND in draft.upper() or not citations_removed(draft).strip(" .")
        embed = self._question_embed()
        lead = []
        if not degenerate:
            verified = self._verify(expand_short_answer(draft, query, lines), sources, embed)
            if not verified.kept_text.strip() and (fallback := yes_no_evidence(draft, query, lines)):
                verified = self._verify(fallback, sources, embed)
            lead = lead_sentences(focus, verified.sentences)
        final = self._verify(compose(focus, lead, sources), sources, embed)
        if not final.citations or not final.kept_text.strip():
            return self._related(question, query, sources, embed, "no sentence survived verification")
        final, disagreement = self._with_rival(query, final, sources, embed)
        values = self._features(query, sources, final, bool(lead), degenerate, embed)
        refusal = self.refusal_model
        confidence = refusal.probability(values) if refusal else None
        if reason := self._refusal_reason(values, confidence):
            if refusal is not None and confidence is not None and confidence < refusal.not_found_below:
                answer = self._refusal(question, sources, reason)
            else:
                answer = self._related(question, query, sources, embed, reason)
        else:
            text = final.kept_text
            if disagreement:
                a, b = disagreement
                text = f"{DISAGREEMENT.format(a=a, b=b)} {text}"
            answer = Answer(question=question, text=text, refused=False, citations=final.citations,
                            sources=sources, disagreement=disagreement)
        if answer.outcome != RELATED_ONLY:
            answer.sentences = final.sentences
        answer.confidence, answer.signals = confidence, values
        return answer

    def _related(self, question: str, query: str, sources: list[Source], embed: Embed | None,
                 reason: str, said: str = "") -> Answer:
        """The third outcome: the papers are related but no answer was verified. The best
        evidence sentences (``RELATED_SENTENCES`` at most, those within ``RELATED_SHARE`` of
        the best score, none that repeats ``said``, the previous answer) are quoted verbatim,
        cited and labelled as such; with none, a plain refusal."""
        pool = [c for c in candidates(query, sources) if not (said and repeats(c.text, said))]
        best = [c for c in pool if c.score >= RELATED_SHARE * pool[0].score][:RELATED_SENTENCES] if pool else []
        quoted = self._verify(" ".join(marked(c.text, c.number) for c in best), sources, embed) if best else None
        if quoted is None or not quoted.citations or not quoted.kept_text.strip():
            return self._refusal(question, sources, reason)
        return Answer(question=question, text=f"{RELATED} {quoted.kept_text}", refused=True,
                      outcome=RELATED_ONLY, refusal_reason=reason, citations=quoted.citations,
                      sentences=quoted.sentences, sources=sources)

    def _with_rival(self, query: str, final: Verified, sources: list[Source],
                    embed: Embed | None) -> tuple[Verified, list[int]]:
        """``final`` with another paper's differing value added when two sources disagree on
        what the question asks (``rag.composition.rival``), and the two source numbers."""
        number = final.citations[0].number
        other = rival(query, final.kept_text, number, sources, candidates(query, sources))
        if other is None:
            return final, []
        both = self._verify(f"{final.kept_text} {marked(other.text, other.number)}", sources, embed)
        if other.number not in {c.number for c in both.citations}:
            return final, []
        return both, [number, other.number]

    def _refusal_reason(self, values: dict[str, float], confidence: float | None) -> str | None:
        """Why a verified answer is refused anyway, or ``None`` to answer."""
        refusal = self.refusal_model
        if self.settings.never_refuse:
            return None
        if refusal is not None and confidence is not None:
            if confidence < refusal.threshold:
                return (f"the evidence does not settle the question (confidence {confidence:.2f} "
                        f"< {refusal.threshold:.2f})")
            return None
        if self.settings.semantic_support and values["relevance"] < self.settings.min_answer_relevance:
            return "the answer does not address the question"
        return None

    def _features(self, query: str, sources: list[Source], final: Verified, lead: bool,
                  degenerate: bool, embed: Embed | None) -> dict[str, float]:
        """The refusal classifier's inputs (``rag.refusal``)."""
        import numpy as np

        idf, asked = self.retriever.idf(), content_terms(query)
        cited = sources[final.citations[0].number - 1]
        paper_terms = set(content_terms(f"{cited.title} {cited.abstract}"))
        pool = candidates(query, sources[:1])
        text = citations_removed(final.kept_text)
        relevance = 0.0
        if embed is not None:
            q, a = np.asarray(embed([query, text]))
            relevance = float(q @ a / max(np.linalg.norm(q) * np.linalg.norm(a), 1e-12))
        return {
            "similarity": float(sources[0].similarity or 0.0),
            "fused": float(sources[0].score),
            "best_sentence": pool[0].score if pool else 0.0,
            "paper_coverage": weighted_coverage(asked, paper_terms, idf),
            "missing_rare": rarest_missing(asked, paper_terms, idf),
            "answer_coverage": weighted_coverage(asked, set(content_terms(text)), idf),
            "lead": float(lead),
            "degenerate": float(degenerate),
            "value_missing": float(QuestionShape.of(query).wants_value and not has_value(text)),
            "relevance": relevance,
        }

    @property
    def refusal_model(self) -> RefusalModel | None:
        """The calibrated answer-or-refuse classifier for the model in use (``rag.refusal``)."""
        if self._refusal_model is None:
            self._refusal_model = (self.settings.refusal == "classifier"
                                   and load_refusal_model(self.settings.model)) or False
        return self._refusal_model or None

    def _relevant(self, sources: list[Source]) -> bool:
        if not sources:
            return False
        sims = [s.similarity for s in sources if s.similarity is not None]
        return not sims or max(sims) >= self.settings.min_similarity

    def _question_embed(self) -> Embed | None:
        """One embedding cache for everything a question's verification compares (drafts, the
        composed answer, the question): each text is embedded once."""
        return cached_embed(self._embed())

    def _verify(self, text: str, sources: list[Source], embed: Embed | None = None) -> Verified:
        return verify_answer(text, sources, self.settings.min_support, embed=embed or self._embed(),
                             judge=self._judge())

    def _refusal(self, question: str, sources: list[Source], reason: str) -> Answer:
        return Answer(question=question, text=REFUSAL, refused=True, outcome=NOT_IN_PAPERS,
                      refusal_reason=reason, sources=sources)

    def _embed(self) -> Embed | None:
        if not self.settings.semantic_support:
            return None
        embedder = self.embedder
        return lambda texts: embedder.embed_short(list(texts))

    def _judge(self) -> Judge | None:
        if self.settings.judge != "generator":
            return None
        generator = self.generator

        def judge(claim: str, evidence: str) -> float:
            return generator.yes_probability(judge_messages(claim, evidence))

        return judge
