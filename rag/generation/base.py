"""What every generator offers (:class:`Generator`), and what they share: the timing of a
generation and the answer words of a yes/no question."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

YES_WORDS, NO_WORDS = ("Yes", "yes", "YES"), ("No", "no", "NO")


@dataclass
class TimingInfo:
    prompt_tokens: int = 0
    time_to_first_token: float | None = None  # seconds from the call to the first token
    decode_tokens_per_s: float | None = None  # tokens after the first / their time
    new_tokens: int = 0
    total_seconds: float = 0.0


class Generator(Protocol):
    """A chat model the pipeline can use: the local transformers model
    (:class:`~rag.generation.local.TransformersGenerator`) or an OpenAI-compatible server
    (:class:`~rag.generation.remote.OpenAIGenerator`). Always greedy."""

    name: str
    device: str  # where it runs, e.g. "cpu (int8)", "cuda (bfloat16)", "remote"
    last_timing: TimingInfo | None  # of the last generation, set when its stream closed

    @property
    def is_loaded(self) -> bool:
        """Whether the first answer will start without loading anything first."""

    def load(self) -> Generator:
        """Load (or, for a server, check) now instead of on first use; returns itself."""

    def stream(self, messages: list[dict], max_new_tokens: int | None = None) -> Iterator[str]:
        """The reply's text pieces as they are decoded; closing the iterator stops it."""

    def generate(self, messages: list[dict], max_new_tokens: int | None = None) -> str:
        """The whole reply."""

    def count_tokens(self, messages: list[dict]) -> int:
        """The prompt's length in tokens (an estimate where the tokenizer is remote)."""

    def yes_probability(self, messages: list[dict]) -> float:
        """P("Yes") / (P("Yes") + P("No")) for the reply's first token."""
