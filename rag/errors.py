"""User-facing errors. Each message says what went wrong *and* what to do about it.

The CLI prints ``str(error)`` as one line and exits non-zero; the Gradio app shows it in a
``gr.Error``. Nothing below should ever surface as a traceback to a user.
"""

from __future__ import annotations


class RagError(Exception):
    """Base class for every error meant to be shown to a user."""


class CorpusError(RagError):
    """A corpus file could not be read or holds no usable paper."""


class StoreError(RagError):
    """The index folder is missing, unreadable, corrupted or built with other settings."""


class ModelError(RagError):
    """A model could not be found, verified, or loaded."""


class QuestionError(RagError):
    """The question itself is unusable (empty, far too long, ...)."""


class ConfigError(RagError):
    """A setting has a value that cannot work."""


__all__ = [
    "RagError",
    "CorpusError",
    "StoreError",
    "ModelError",
    "QuestionError",
    "ConfigError",
]
