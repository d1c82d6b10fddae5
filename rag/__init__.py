"""citewise: answers from research-paper abstracts, every claim cited, or an honest refusal.

>>> from rag import Pipeline, Settings              # doctest: +SKIP
>>> answer = Pipeline(Settings()).ask("What BLEU does the Transformer reach?")  # doctest: +SKIP
>>> answer.text, [c.title for c in answer.citations]  # doctest: +SKIP
"""

import os as _os

# Offline by default: nothing may reach the Hugging Face hub, Chroma or Gradio telemetry
# unless the user explicitly sets these variables otherwise.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
}
for _key, _value in OFFLINE_ENV.items():
    _os.environ.setdefault(_key, _value)

from .config import Settings  # noqa: E402
from .errors import (  # noqa: E402
    ConfigError,
    CorpusError,
    ModelError,
    QuestionError,
    RagError,
    StoreError,
)
from .types import Answer, AnswerSentence, Citation, Filters, Paper, Source, Status, Token  # noqa: E402



def __getattr__(name: str) -> type:
    """``Pipeline`` loads on first use, so ``import rag`` stays instant."""
    if name == "Pipeline":
        from .pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'rag' has no attribute {name!r}")


__all__ = [
    "Pipeline",
    "Settings",
    "Filters",
    "Answer",
    "AnswerSentence",
    "Citation",
    "Paper",
    "Source",
    "Status",
    "Token",
    "RagError",
    "ConfigError",
    "CorpusError",
    "ModelError",
    "QuestionError",
    "StoreError",
]
