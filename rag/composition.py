"""Answer composition: the model's verified lead, then the abstract sentences that settle the question.

A 0.5B model writes one sentence, and often not the one the question needs: it answers one
part of a two-part question, copies the topic sentence, or echoes the question. Verification
keeps such a sentence because it is true. Composition builds the answer the user reads from
parts that are each checkable:

* **single questions**: the model's sentence leads when it survived verification, is no echo
  of the question and has the kind of answer asked for (a value for "how many"), followed by
  the abstract sentence it rests on when that is not the lead itself. A question in several
  parts ("what X, and how Y?") gets the sentences of the same paper that add question terms
  the answer does not hold yet; a value question without a value gets the paper's best
  sentence with one. With no usable lead, the answer starts from the best evidence sentence.
  At most ``MAX_SENTENCES`` in all, verbatim and cited;
* **multi-paper questions** ("which papers ...", "each", "compare"): one sentence per paper,
  for the papers retrieval ranks highest (PaperQA2-style per-paper answers), each the
  paper's sentence that bears most on the question, preferring one that says what the paper
  did and names it ("we propose L-SFAN, ..."). The model's single sentence is not used: it
  speaks for one paper at most.

Sentences are ranked lexically (``rag.evidence.sentence_scores`` without embeddings): on the
dev split this chose better sentences than adding MiniLM similarity (all-keyword accuracy
0.518 against 0.482) at a third of the time. Every sentence is then verified like any other
answer (``rag.citations.verify_answer``).

>>> from rag.types import Source
>>> s = Source(1, "p", "P", 1.0, "", "We study hulls. Ptr-Nets solve convex hulls. They also do Delaunay triangulation.")
>>> compose("Which network solves convex hulls, and does it do Delaunay triangulation?", [], [s])
'Ptr-Nets solve convex hulls [1]. They also do Delaunay triangulation [1].'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .answer_checks import QuestionShape, conflicting_values, has_value, is_echo
from .evidence import Embed, sentence_scores
from .injection import evidence_sentences
from .sentences import content_terms, named_terms
from .types import AnswerSentence, Source

MAX_SENTENCES = 3  # a question in several parts
SINGLE_PART = 2  # a question in one part: the lead and one more sentence
MAX_PAPERS = 2  # a multi-paper question's answer: one sentence each
RANK_BONUS = 0.15  # the first-ranked paper's sentences, as in rag.evidence.pool_evidence
DUPLICATE = 0.7  # share of a sentence's terms already in the answer that makes it a repeat
CUE_BONUS = 0.15  # a sentence that states a contribution or a finding
NAME_BONUS = 0.1  # multi-paper answers: a sentence naming something the question does not
SECOND_PAPER = 0.6  # a further paper joins a multi answer if its retrieval score is this share of the first's
RIVAL_SIMILARITY = 0.75  # a paper giving another value must be this close in meaning (cosine share of the best)


#: "we propose X", "dubbed X", "results show": sentences that say what a paper did or found,
#: rather than the background that usually shares more words with the question.
ANSWER_CUE = re.compile(
    r"\b(?:we|this (?:paper|work|study|note)|here,? we|our (?:method|approach|model|results?|"
    r"analysis|work))\s+(?:\w+\s+){0,2}?(?:propose|introduce|present|develop|design|describe|"
    r"build|create|show|find|found|demonstrate|reveal|prove|observe|identify|achieve|obtain|"
    r"reach|outperform|report)|\b(?:called|dubbed|named|termed)\b|\b(?:results?|experiments?|"
    r"evaluations?)\s+(?:\w+\s+){0,3}?(?:show|demonstrate|reveal|indicate|confirm)", re.I)


@dataclass(frozen=True)
class Candidate:
    """One abstract sentence that may go into the answer."""

    number: int  # source number
    text: str
    score: float  # relevance to the question (rag.evidence.sentence_scores + rank bonus)


def candidates(question: str, sources: Sequence[Source], embed: Embed | None = None) -> list[Candidate]:
    """Every sentence of every source, scored against ``question``, best first."""
    out = []
    for source in sources:
        sentences = evidence_sentences(source.abstract or source.text)
        bonus = RANK_BONUS if source.number == 1 else 0.0
        out += [Candidate(source.number, text,
                          score + bonus + (CUE_BONUS if ANSWER_CUE.search(text) else 0.0))
                for text, score in zip(sentences, sentence_scores(question, sentences, embed))]
    return sorted(out, key=lambda c: (-c.score, c.number))


def lead_sentences(question: str, sentences: Sequence[AnswerSentence]) -> list[AnswerSentence]:
    """The model's verified sentences that can lead an answer: cited, no echo of the question,
    and of the kind asked for (a value question needs a value)."""
    shape = QuestionShape.of(question)
    return [s for s in sentences if s.supported and s.citations and not is_echo(question, s.text)
            and shape.fits(s.text)]


def rival(question: str, answer: str, number: int, sources: Sequence[Source],
          pool: Sequence[Candidate]) -> Candidate | None:
    """Another paper's sentence that gives a different value for what ``question`` asks than
    ``answer`` (cited to source ``number``): two sources disagree, and the answer must say so
    rather than pick one silently. Only papers that retrieval ranks close to the first count (as
    for a multi-paper answer, ``SECOND_PAPER``, and by meaning alone, ``RIVAL_SIMILARITY``): a
    paper about another method that reports its own figure on the same benchmark is no rival.
    Of each, its best sentence that puts another value beside the same question terms
    (``rag.answer_checks.conflicting_values``).
    ``pool``: ``candidates`` of the question, best first.

    >>> a = Source(1, "a", "A", 1.0, "", "An MLP reaches 93% on CIFAR10.")
    >>> b = Source(2, "b", "B", 0.9, "", "We study MLPs. An MLP reaches 12% on CIFAR10.")
    >>> q = "What accuracy does an MLP reach on CIFAR10?"
    >>> rival(q, "An MLP reaches 93% on CIFAR10 [1].", 1, [a, b], candidates(q, [a, b])).text
    'An MLP reaches 12% on CIFAR10.'
    """
    shape = QuestionShape.of(question)
    if not shape.wants_value or shape.multi or not sources or not has_value(answer):
        return None
    top = max(s.score for s in sources)
    sims = [s.similarity for s in sources if s.similarity is not None]
    close = {s.number for s in sources if s.number != number and s.score >= SECOND_PAPER * top
             and (s.similarity is None or s.similarity >= RIVAL_SIMILARITY * max(sims))}
    for c in pool:
        if c.number in close and has_value(c.text) and conflicting_values(question, answer, c.text):
            return c
    return None


def marked(text: str, number: int) -> str:
    """``text`` as an answer sentence citing source ``number``: "It works [2]."."""
    body = " ".join(text.split()).rstrip()
    end = body[-1] if body[-1:] in ".!?" else "."
    return f"{body.rstrip('.!?').rstrip()} [{number}]{end}"


def _repeats(text: str, answer_terms: set[str]) -> bool:
    terms = set(content_terms(text))
    return bool(terms) and len(terms & answer_terms) >= DUPLICATE * len(terms)


def compose(question: str, lead: Sequence[AnswerSentence], sources: Sequence[Source],
            embed: Embed | None = None) -> str:
    """The answer text, with ``[n]`` markers, for ``question`` (see the module docstring).

    ``lead``: the model's sentences that passed ``lead_sentences``. Empty when nothing fits
    (then the answer is the evidence alone); "" when there is nothing to say.
    """
    pool = candidates(question, sources, embed)
    if not pool:
        return ""
    if QuestionShape.of(question).multi:
        return _per_paper(question, pool, sources)
    return _single(question, lead, pool)


def _single(question: str, lead: Sequence[AnswerSentence], pool: list[Candidate]) -> str:
    shape, asked = QuestionShape.of(question), set(content_terms(question))
    parts: list[str] = []
    have: set[str] = set()
    if lead:
        anchor = lead[0].citations[0]
        parts.append(marked(lead[0].text, anchor))
        have = set(content_terms(lead[0].text))
    else:
        anchor = pool[0].number
    limit = MAX_SENTENCES if shape.parts > 1 else SINGLE_PART
    valued = any(has_value(p) for p in parts)
    for c in (c for c in pool if c.number == anchor):
        if len(parts) >= limit:
            break
        terms = set(content_terms(c.text))
        if _repeats(c.text, have) or (shape.wants_value and valued and not terms - have):
            continue
        adds = bool((terms & asked) - have) or (shape.wants_value and not valued and has_value(c.text))
        if len(parts) < SINGLE_PART or adds:
            parts.append(marked(c.text, c.number))
            have |= terms
            valued = valued or has_value(c.text)
    return " ".join(parts)


def _per_paper(question: str, pool: list[Candidate], sources: Sequence[Source]) -> str:
    asked = {t.lower() for t in named_terms(question)}

    def weight(c: Candidate) -> float:  # what a paper did, named, answers "which papers ..."
        cue = CUE_BONUS if ANSWER_CUE.search(c.text) else 0.0
        names = NAME_BONUS if {t.lower() for t in named_terms(c.text)} - asked else 0.0
        return c.score + cue + names

    # The papers are retrieval's first ones (it ranks whole abstracts against the question;
    # one good sentence of a lower-ranked paper is weaker evidence of being asked about).
    ranked = sorted(sources, key=lambda s: s.number)
    papers = [s.number for s in ranked[:MAX_PAPERS] if s.score >= SECOND_PAPER * ranked[0].score]
    parts = []
    for number in papers:
        if own := [c for c in pool if c.number == number]:
            best = max(own, key=weight)
            parts.append(marked(best.text, number))
    return " ".join(parts)
