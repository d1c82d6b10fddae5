"""Questions in, clean standalone questions out: validation and follow-up rewriting.

A follow-up like "and how fast is it?" means nothing to a retriever on its own. When a
question leans on the conversation (pronouns, "and ...", "what about ...", very short), the
standalone question is the previous question's subject plus the follow-up, which keeps
retrieval on the same papers. This is deterministic and instant, unlike asking a small
model to paraphrase (slow on a CPU, and prone to drifting off topic).

>>> standalone_question("and how fast is it?", [{"role": "user", "content": "What is Mamba?"}])
'What is Mamba? and how fast is it?'
>>> standalone_question("What does the RWKV architecture do?", [("What is Mamba?", "A model.")])
'What does the RWKV architecture do?'
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from .errors import QuestionError

MAX_QUESTION_CHARS = 2000

_FOLLOW_UP = re.compile(
    r"^(and|but|also|what about|how about|then|so|same|why|how so)\b"
    r"|\b(it|its|it's|they|them|their|this|that|these|those|he|she|the paper|the method|"
    r"the model|the approach|the authors)\b",
    re.IGNORECASE,
)


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


def user_turns(history: Sequence[Any] | None) -> list[str]:
    """The user's earlier questions from a chat history: ``(question, answer)`` pairs (the
    answer may be ``None`` while it is pending) or Gradio/OpenAI-style ``{"role": ...,
    "content": ...}`` messages, mixed if need be. Anything else is a ``QuestionError`` saying
    what is accepted (a list of plain strings would otherwise lose the conversation silently).

    >>> user_turns([("What is Mamba?", "A model [1]."), {"role": "user", "content": "and RWKV?"}])
    ['What is Mamba?', 'and RWKV?']
    """
    if history is None:
        return []
    if isinstance(history, (str, bytes, dict)) or not isinstance(history, Sequence):
        raise QuestionError(f"{HISTORY_HELP}; got {type(history).__name__}.")
    turns = []
    for i, item in enumerate(history):
        if isinstance(item, dict):
            text = _content(item.get("content"))
            if item.get("role") not in _ROLES or text is None:
                raise QuestionError(f"{HISTORY_HELP}; item {i} is {_shown(item)}.")
            if item["role"] == "user":
                turns.append(text)
        elif (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
              and (item[1] is None or isinstance(item[1], str))):
            turns.append(item[0])
        else:
            raise QuestionError(f"{HISTORY_HELP}; item {i} is {_shown(item)}.")
    return [t for t in (" ".join(t.split()) for t in turns) if t]


def _shown(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 60 else text[:59] + "\u2026"


def is_follow_up(question: str) -> bool:
    return bool(_FOLLOW_UP.search(question)) or len(question.split()) <= 3


def standalone_question(question: str, history: Sequence[Any] | None = None) -> str:
    """``question`` made self-contained using the previous user turn when it needs it."""
    previous = user_turns(history)
    if not previous or not is_follow_up(question):
        return question
    # Anchor on the latest turn that stood on its own ("What is Mamba?"), skipping
    # earlier follow-ups ("and how fast is it?") in a chain of them.
    anchor = next((t for t in reversed(previous) if not is_follow_up(t)), previous[0])
    rewritten = f"{anchor} {question}"
    return rewritten[-MAX_QUESTION_CHARS:]
