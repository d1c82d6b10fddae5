"""Short answers made whole: a bare value the model copied from the evidence ("83.0%",
"Over 93.8%", "[1] 410M") becomes the evidence sentence it was copied from, cited; a bare
"Yes."/"No." to a yes/no question becomes the evidence sentence that bears on it.

A small model often answers a "what accuracy / how many" question with the value alone.
That is not a sentence the verifier can check against an abstract, and refusing it throws
away a correct answer. When the value occurs in exactly one of the sentences the model was
shown, that sentence *is* the grounded answer, so it is returned verbatim with its source
number. Nothing changes when the value is ambiguous, absent from the evidence, or of the
wrong kind for the question (a percentage for "how many GPU-hours").

>>> expand_short_answer("[1] 3.65", "What test error?", [(1, "We reach 3.65 test error."), (2, "Fast.")])
'We reach 3.65 test error. [1]'
>>> expand_short_answer("It reaches 3.65 test error [1].", "What test error?", [(1, "3.65 error.")])
'It reaches 3.65 test error [1].'
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .sentences import CITATION_MARKER

MAX_WORDS = 6
_AUXILIARY = ("is|are|was|were|do|does|did|can|could|has|have|had|will|would|should|may|might|"
              "must")
# The main clause opens with an auxiliary: "Does X ...?", "When X, do Y ...?" (not "What ...").
_YES_NO_QUESTION = re.compile(rf"^(?:[^,?]*,\s*)?(?:{_AUXILIARY})\b[^?]*\??$", re.I)
_YES_NO_DRAFT = re.compile(r"^\W*(yes|no)\b", re.I)
_COUNT = re.compile(r"\bhow (?:many|much|long)\b", re.I)
_SHARE = re.compile(r"\b(?:accuracy|percent(?:age)?|share|proportion|fraction|rate|%)\b", re.I)


def _squash(text: str) -> str:
    return re.sub(r"[^\w%.]+", " ", text.casefold()).strip(" .")


def _kind_fits(value: str, question: str) -> bool:
    """A percentage answers a share, not a count or a duration ("how many GPU-hours")."""
    return not ("%" in value and _COUNT.search(question) and not _SHARE.search(question))


def expand_short_answer(draft: str, question: str, lines: Sequence[tuple[int, str]]) -> str:
    """``draft`` itself, or the one evidence line that a bare-value ``draft`` comes from."""
    body = CITATION_MARKER.sub(" ", draft or "").strip()
    words = body.split()
    if not words or len(words) > MAX_WORDS or not re.search(r"\d", body):
        return draft
    value = _squash(body)
    for lead in ("over ", "about ", "around ", "approximately ", "up to ", "nearly ", "roughly "):
        value = value.removeprefix(lead)
    if not value or not _kind_fits(body, question):
        return draft
    pattern = re.compile(r"(?<![\w.])" + re.escape(value) + r"(?![\w])")
    hits = {(n, s) for n, s in lines if pattern.search(_squash(s))}
    if len(hits) != 1:
        return draft
    ((number, sentence),) = hits
    return f"{' '.join(sentence.split())} [{number}]"


def is_yes_no_question(question: str) -> bool:
    """Whether ``question`` asks for a yes or a no rather than a what/which/how.

    >>> is_yes_no_question("When models learn in context, do RNNs keep up?"), is_yes_no_question("What is it?")
    (True, False)
    """
    return bool(_YES_NO_QUESTION.match(" ".join(question.split())))


def yes_no_evidence(draft: str, question: str, lines: Sequence[tuple[int, str]]) -> str | None:
    """For a yes/no ``question`` whose ``draft`` opens with "Yes"/"No": the most relevant
    evidence line (``lines[0]``, as ranked by ``rag.evidence.pool_evidence``), verbatim and
    cited; otherwise ``None``. The pipeline asks for it only when the draft itself did not
    survive verification.

    A small model often answers a yes/no question with "Yes." or with "Yes," plus the
    question reworded, neither of which an abstract can be checked against. The evidence
    sentence is the grounded answer; the model's yes or no is left out, because it is the
    part that cannot be verified.

    >>> yes_no_evidence("[2] Yes.", "Can RNNs count?", [(2, "RNNs learn to count."), (1, "No.")])
    'RNNs learn to count. [2]'
    >>> yes_no_evidence("Yes.", "Which RNN counts?", [(2, "RNNs learn to count.")]) is None
    True
    """
    body = CITATION_MARKER.sub(" ", draft or "")
    if not lines or not _YES_NO_DRAFT.match(body) or not is_yes_no_question(question):
        return None
    number, sentence = lines[0]
    return f"{' '.join(sentence.split())} [{number}]"
