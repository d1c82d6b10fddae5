"""Test doubles with meaningful behaviour (no constant outputs).

``ScriptedGenerator`` replies with a given text, streamed word by word, and records every
prompt it saw. ``fake_embed`` is a bag-of-stems embedder whose vectors still rank sensibly, and
``seed_abstract`` finds a real seed abstract by a phrase in it.
``ExtractiveGenerator`` answers like a careful model would: it copies the
first evidence sentence tagged [1] in the prompt and cites it.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from functools import cache

import numpy as np

from rag.config import SEEDS_DIR
from rag.sentences import content_terms


class ScriptedGenerator:
    """A ``rag.generation.Generator`` that replies with a fixed text."""

    name = "scripted"
    device = "cpu"
    is_loaded = True
    last_timing = None

    def __init__(self, reply: str = "", yes: float = 0.9):
        self.reply = reply
        self.yes = yes
        self.prompts: list[list[dict]] = []

    def stream(self, messages: list[dict], max_new_tokens: int) -> Iterator[str]:
        self.prompts.append(messages)
        for piece in re.findall(r"\S+\s*", self.reply):
            yield piece

    def load(self) -> "ScriptedGenerator":
        return self

    def generate(self, messages: list[dict], max_new_tokens: int | None = None) -> str:
        return "".join(self.stream(messages, max_new_tokens))

    def count_tokens(self, messages: list[dict]) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def yes_probability(self, messages: list[dict]) -> float:
        self.prompts.append(messages)
        return self.yes


class ExtractiveGenerator(ScriptedGenerator):
    name = "extractive"

    def stream(self, messages: list[dict], max_new_tokens: int) -> Iterator[str]:
        self.prompts.append(messages)
        line = re.search(r"^\[1\] (.+)$", messages[-1]["content"], re.M)
        if not line:
            yield "NOT FOUND"
            return
        first = line.group(1).strip().rstrip(".")
        for piece in re.findall(r"\S+\s*", f"{first} [1]."):
            yield piece


@cache
def _abstract_lines() -> tuple[str, ...]:
    """Every long line of the seed listings (the abstracts), verbatim."""
    return tuple(line.strip() for path in sorted(SEEDS_DIR.glob("*.txt"))
                 for line in path.read_text(encoding="utf-8").splitlines() if len(line) > 300)


def seed_abstract(phrase: str) -> str:
    """The real seed abstract that contains ``phrase``."""
    return next(line for line in _abstract_lines() if phrase in line)


def fake_embed(texts: list[str]) -> list[np.ndarray]:
    """A deterministic bag-of-stems embedder (unit vectors), standing in for MiniLM."""
    out = []
    for text in texts:
        v = np.zeros(64)
        for term in content_terms(text):
            v[zlib.crc32(term.encode()) % 64] += 1.0
        out.append(v / (np.linalg.norm(v) or 1.0))
    return out
