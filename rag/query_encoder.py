"""Fast single-question embeddings on CPU: the embedder's own weights run by ONNX Runtime.

Embedding one short question with sentence-transformers on a 2-core CPU costs ~20 ms, most
of it framework overhead on tiny matrices; the same graph exported once to ONNX runs in
~10 ms and gives the same vector (max difference ~1e-7), so questions can be matched
against chunks that were embedded with torch. The export is cached beside the converted
models, keyed by the embedder's files, written atomically, and checked against torch on
every load: a stale or damaged export is rebuilt, and any failure falls back to torch.

>>> encode = load_query_encoder(settings, embedder)          # doctest: +SKIP
>>> len(encode("sparse attention for long documents"))      # doctest: +SKIP
384
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .config import Settings

QueryEncoder = Callable[[str], list[float]]

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PROBE = "Sparse mixture-of-experts layers route each token to 2 of 64 experts."
_TOLERANCE = 1e-4
_LOCK = threading.Lock()
_CACHE: dict[tuple[str, str], QueryEncoder | None] = {}


def load_query_encoder(settings: Settings, embedder: Any) -> QueryEncoder | None:
    """An ONNX Runtime encoder matching ``embedder`` (a llama-index HuggingFaceEmbedding),
    or ``None`` where it does not apply (GPU, setting off) or cannot be built."""
    model = getattr(embedder, "_model", None)
    if not settings.onnx_queries or model is None or str(model.device) != "cpu":
        return None
    folder = Path(settings.model_cache_dir) / "embedders"
    key = (str(folder), _fingerprint(model))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _build(model, folder / f"{key[1]}.onnx")
        return _CACHE[key]


def _fingerprint(model: Any) -> str:
    """Changes whenever the embedder's weights or configuration do."""
    h = hashlib.sha256()
    h.update(str(getattr(model, "max_seq_length", "")).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().flatten()[:: max(tensor.numel() // 64, 1)].numpy().tobytes())
    return h.hexdigest()[:20]


def _build(model: Any, path: Path) -> QueryEncoder | None:
    try:
        if path.exists() and (encode := _checked(model, path)):
            return encode
        path.unlink(missing_ok=True)  # missing, stale or damaged: export again, once
        _export(model, path)
        if encode := _checked(model, path):
            return encode
        raise RuntimeError("the ONNX export disagrees with torch")
    except Exception as exc:  # noqa: BLE001 - torch still works; say why it is slower
        warnings.warn(f"fast question embedding unavailable ({type(exc).__name__}: {exc}); "
                      "using torch", stacklevel=2)
        return None


def _checked(model: Any, path: Path) -> QueryEncoder | None:
    """The export at ``path`` as an encoder, if it loads and agrees with torch."""
    try:
        encode = _session_encoder(model, path)
    except Exception:  # noqa: BLE001 - unreadable graph: the caller re-exports
        return None
    return encode if _agrees(encode, model) else None


def _export(model: Any, path: Path) -> None:
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001, ANN201
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state

    encoder = model[0].auto_model.eval()
    sample = model.tokenizer([_PROBE], return_tensors="pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHiddenState(encoder), tuple(sample[n] for n in _INPUTS), str(tmp),
            input_names=list(_INPUTS), output_names=["last_hidden_state"],
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )
    os.replace(tmp, path)


def _session_encoder(model: Any, path: Path) -> QueryEncoder:
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    tokenizer, max_len = model.tokenizer, int(model.max_seq_length or 512)
    wanted = {i.name for i in session.get_inputs()}

    def encode(text: str) -> list[float]:
        batch = tokenizer([text], return_tensors="np", truncation=True, max_length=max_len)
        feed = {n: batch[n].astype(np.int64) for n in _INPUTS if n in wanted and n in batch}
        if "token_type_ids" in wanted and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        hidden = session.run(None, feed)[0]
        mask = batch["attention_mask"][..., None].astype(hidden.dtype)
        vec = (hidden * mask).sum(axis=1)[0] / max(float(mask.sum()), 1.0)
        return (vec / max(float(np.linalg.norm(vec)), 1e-12)).tolist()

    return encode


def _agrees(encode: QueryEncoder, model: Any) -> bool:
    """Same vector as the torch model on a probe sentence (the pooling must be mean)."""
    names = [type(m).__name__ for m in model]
    pooling = model[1] if len(names) > 1 else None
    mean = getattr(pooling, "pooling_mode", None) == "mean" or getattr(pooling, "pooling_mode_mean_tokens", False)
    if names[:2] != ["Transformer", "Pooling"] or not mean:
        return False
    reference = model.encode([_PROBE], normalize_embeddings=True)[0]
    return float(np.abs(np.asarray(encode(_PROBE)) - reference).max()) < _TOLERANCE
