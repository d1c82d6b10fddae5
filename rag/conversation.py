"""Questions in, clean standalone questions out: validation, conversation history, and
follow-ups made standalone (the rules live in ``rag.follow_ups``).

A follow-up like "and how fast is it?" means nothing to a retriever on its own, and the
standalone question is also the question the model answers, so a follow-up becomes one
question about its own request with the conversation's subject put back in. In a chain of
follow-ups the subject carries through every turn. ``previous_answer`` and ``repeats`` let
the pipeline tell a follow-up answer that only repeats the previous one.

>>> standalone_question("and how fast is it?", [{"role": "user", "content": "What is Mamba?"}])
'How fast is Mamba?'
>>> standalone_question("and how long did the search take?",
...     [("What test error does the neural architecture search method reach on CIFAR-10?", "3.65 [1].")])
'How long did the search take for the neural architecture search method on CIFAR-10?'
>>> standalone_question("and on ImageNet?", [("What test error does FractalNet reach on CIFAR?", None)])
'What test error does FractalNet reach on ImageNet?'
>>> standalone_question("What does the RWKV architecture do?", [("What is Mamba?", "A model.")])
'What does the RWKV architecture do?'
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from .errors import QuestionError
from .follow_ups import Topic, is_follow_up, rewrite, subject_of
from .sentences import CITATION_MARKER, content_terms, split_sentences

MAX_QUESTION_CHARS = 2000

_PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">", '"': '"', "'": "'", "“": "”", "‘": "’", "«": "»"}


def _unwrapped(text: str) -> str:
    """``text`` without brackets or quotes wrapped around the whole of it ("((What is X?))"),
    nor runs of three or more bracket characters at either end.

    >>> _unwrapped("[[[(What is a Ptr-Net?)]]]"), _unwrapped("Why (2015)?"), _unwrapped("((((Why?")
    ('What is a Ptr-Net?', 'Why (2015)?', 'Why?')
    """
    while len(text) >= 2 and _PAIRS.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    text = re.sub(r"^[\[\](){}<>]{3,}\s*|\s*[\[\](){}<>]{3,}$", "", text)
    return text.strip()


def clean_question(text: Any) -> str:
    """Strip control characters and extra spaces; reject empty or oversized questions."""
    if not isinstance(text, str):
        raise QuestionError("The question must be text.")
    text = "".join(  # control, format, separator and lone-surrogate characters
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") else ch for ch in text
    )
    text = _unwrapped(" ".join(text.split()))
    if not text:
        raise QuestionError("The question is empty; type a question about the papers.")
    if len(text) > MAX_QUESTION_CHARS:
        raise QuestionError(
            f"The question is {len(text):,} characters long; please ask in under "
            f"{MAX_QUESTION_CHARS:,} characters (one question at a time works best)."
        )
    return text


HISTORY_HELP = ("history must be a list of (question, answer) pairs or of {'role': 'user' | "
                "'assistant' | 'system', 'content': text} messages")
_ROLES = ("user", "assistant", "system")


def _content(content: Any) -> str | None:
    """A message's text: a string, or the text parts of OpenAI/Gradio-style content lists."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        parts = [p.get("text") for p in content if p.get("type", "text") == "text"]
        return " ".join(p for p in parts if isinstance(p, str))
    return None


def _messages(history: Sequence[Any] | None) -> list[tuple[str, str | None]]:
    """``history`` as ``(role, text)`` messages in order (a pair is a user message and an
    assistant one, whose text is ``None`` while pending); a ``QuestionError`` otherwise."""
    if history is None:
        return []
    if isinstance(history, (str, bytes, dict)) or not isinstance(history, Sequence):
        raise QuestionError(f"{HISTORY_HELP}; got {type(history).__name__}.")
    messages: list[tuple[str, str | None]] = []
    for i, item in enumerate(history):
        if isinstance(item, dict):
            text = _content(item.get("content"))
            if item.get("role") not in _ROLES or text is None:
                raise QuestionError(f"{HISTORY_HELP}; item {i} is {_shown(item)}.")
            messages.append((item["role"], text))
        elif (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
              and (item[1] is None or isinstance(item[1], str))):
            messages += [("user", item[0]), ("assistant", item[1])]
        else:
            raise QuestionError(f"{HISTORY_HELP}; item {i} is {_shown(item)}.")
    return messages


def user_turns(history: Sequence[Any] | None) -> list[str]:
    """The user's earlier questions from a chat history: ``(question, answer)`` pairs (the
    answer may be ``None`` while it is pending) or Gradio/OpenAI-style ``{"role": ...,
    "content": ...}`` messages, mixed if need be. Anything else is a ``QuestionError`` saying
    what is accepted (a list of plain strings would otherwise lose the conversation silently).

    >>> user_turns([("What is Mamba?", "A model [1]."), {"role": "user", "content": "and RWKV?"}])
    ['What is Mamba?', 'and RWKV?']
    """
    turns = [text for role, text in _messages(history) if role == "user"]
    return [t for t in (" ".join(t.split()) for t in turns if t is not None) if t]


def previous_answer(history: Sequence[Any] | None) -> str | None:
    """The text of the last assistant answer in ``history`` (pairs or role messages), or
    ``None`` when there is none yet (pending answers and blank ones are skipped). Malformed
    histories are a ``QuestionError``, as in ``user_turns``.

    >>> previous_answer([("What is Mamba?", "A state-space model [1]."), ("and RWKV?", None)])
    'A state-space model [1].'
    >>> previous_answer([{"role": "user", "content": "What is Mamba?"}]) is None
    True
    """
    for role, text in reversed(_messages(history)):
        if role == "assistant" and text is not None and text.strip():
            return " ".join(text.split())
    return None


#: A sentence of an answer is "already said" when at least this share of its content words
#: occur in the previous answer (``repeats``).
REPEAT_OVERLAP = 0.8
#: A follow-up with more than this share of its content words in the previous answer was
#: answered by it already (``repeats`` with a question).
ANSWERED_SHARE = 0.5


def _said(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", CITATION_MARKER.sub(" ", text).lower()))


def repeats(answer: str, previous: str, question: str | None = None) -> bool:
    """Whether ``answer`` only says again what ``previous`` (the last answer) said.

    Every sentence of ``answer`` that has content words must be already said: equal to a
    sentence of ``previous`` once citation markers ("[1]"), case, punctuation and spacing are
    ignored, or, with three content words or more, having at least ``REPEAT_OVERLAP`` (80%) of
    them (stemmed, stopwords aside) in ``previous`` (a reworded or trimmed repeat). One new
    sentence is enough not to repeat, so a new claim put before the paper sentence quoted last
    time is an answer; "Yes."/"No." alone repeat nothing, nor does anything after an empty
    ``previous``. With ``question`` (the standalone follow-up), a repeat counts only when the
    question asks for what ``previous`` did not say: when more than ``ANSWERED_SHARE`` (half)
    of the question's content words are in ``previous``, one sentence answered both questions
    (a sentence listing several findings, or the same question asked again), and saying it
    again is an answer.

    >>> repeats("Ptr-Nets select input positions [1].", "Ptr-Nets select input positions [2]. More.")
    True
    >>> repeats("They learn sorting [1]. Ptr-Nets select positions [1].", "Ptr-Nets select positions [1].")
    False
    >>> said = "mixup reduces the memorization of corrupt labels and stabilizes GAN training [1]."
    >>> repeats(said, said, "Does mixup stabilize GAN training?"), repeats(said, said, "How fast is mixup?")
    (False, True)
    """
    sentences = [s for s in split_sentences(answer or "") if _terms(s)]
    if not sentences or not (previous or "").strip():
        return False
    before = {_said(s) for s in split_sentences(previous)}
    before_terms = set(_terms(previous))

    def said(sentence: str) -> bool:
        if _said(sentence) in before:
            return True
        terms = _terms(sentence)
        return len(terms) >= 3 and sum(t in before_terms for t in terms) >= REPEAT_OVERLAP * len(terms)

    if not all(said(s) for s in sentences):
        return False
    asked = _terms(question or "")
    return not asked or sum(t in before_terms for t in asked) <= ANSWERED_SHARE * len(asked)


def _terms(text: str) -> list[str]:
    return [t for t in content_terms(CITATION_MARKER.sub(" ", text)) if t != "yes"]


def _shown(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 60 else text[:59] + "\u2026"


def standalone_question(question: str, history: Sequence[Any] | None = None) -> str:
    """``question`` made self-contained using the conversation so far when it is a follow-up
    (``is_follow_up``), else ``question`` itself. Earlier follow-ups in a chain are resolved
    first, so their subject carries on; if no earlier question names a subject, the follow-up
    is returned unchanged.

    >>> standalone_question("and what problems was it tested on?",
    ...     [("Which architecture outputs positions in its input sequence?", "Ptr-Nets [1].")])
    'What problems was the architecture that outputs positions in its input sequence tested on?'
    >>> standalone_question("what about its speed?", [("What is Mamba?", None), ("Is it open source?", None)])
    "What about Mamba's speed?"
    """
    topic = _topic(question, history)
    return question if topic is None else rewrite(question, topic)[0][:MAX_QUESTION_CHARS]


def follow_up_subject(question: str, history: Sequence[Any] | None = None) -> str | None:
    """The subject ``standalone_question`` carries into ``question`` from the conversation,
    or ``None`` when it returns ``question`` unchanged. The rest of the standalone question
    is what the follow-up itself asks, which is what evidence should match: the subject's
    words are in the first sentence of its paper, the answer mostly elsewhere.

    >>> follow_up_subject("and how fast is it?", [("What is Mamba?", None)])
    'Mamba'
    >>> follow_up_subject("What is RWKV?", [("What is Mamba?", None)]) is None
    True
    """
    topic = _topic(question, history)
    return None if topic is None else topic.subject


def follow_up_focus(query: str, subject: str | None) -> str:
    """What a follow-up asks of its subject: the standalone ``query`` with the carried
    ``subject`` (``follow_up_subject``) put back as "it", or ``query`` itself when nothing was
    carried. Retrieval needs the subject to find the paper; the answer's sentences should be
    chosen by the rest, since the subject's own words match its paper's opening sentence,
    which is seldom what the follow-up asks.

    >>> follow_up_focus("What problems was the architecture that outputs positions tested on?",
    ...                 "the architecture that outputs positions")
    'What problems was it tested on?'
    >>> follow_up_focus("What is Mamba?", None)
    'What is Mamba?'
    """
    if not subject:
        return query
    at = query.lower().find(subject.lower())
    if at < 0:
        return query
    return " ".join(f"{query[:at]}it{query[at + len(subject):]}".split())


def _topic(question: str, history: Sequence[Any] | None) -> Topic | None:
    """The conversation's topic when ``question`` is a follow-up that needs it, else ``None``."""
    topic: Topic | None = None
    for turn in user_turns(history):
        if not is_follow_up(turn):
            topic = subject_of(turn) or topic
        elif topic is not None:
            topic = rewrite(turn, topic)[1]
    return topic if topic is not None and is_follow_up(question) else None
