"""Test doubles with meaningful behaviour (no constant outputs).

``ScriptedGenerator`` replies with a given text, streamed word by word, and records every
prompt it saw. ``ExtractiveGenerator`` answers like a careful model would: it copies the
first evidence sentence tagged [1] in the prompt and cites it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator


class ScriptedGenerator:
    name = "scripted"
    device = "cpu"

    def __init__(self, reply: str = "", yes: float = 0.9):
        self.reply = reply
        self.yes = yes
        self.prompts: list[list[dict]] = []

    def stream(self, messages: list[dict], max_new_tokens: int) -> Iterator[str]:
        self.prompts.append(messages)
        for piece in re.findall(r"\S+\s*", self.reply):
            yield piece

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
