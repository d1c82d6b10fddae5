"""Fast embeddings of questions and answer sentences on CPU: the embedder's own weights,
exported once to ONNX and run by ONNX Runtime.

Embedding one short question with sentence-transformers on a 2-core CPU costs ~20 ms, most
of it framework overhead on tiny matrices, and importing sentence-transformers alone takes
~7 s; the same graph under ONNX Runtime runs in ~10 ms, loads in well under a second, and
gives the same vectors (max difference ~1e-7), so questions still match chunks that were
embedded with torch. The export is made once per embedder (keyed by its files), written
atomically with a reference vector beside it, and checked against that vector on every
load: a stale or damaged export is rebuilt, and any failure falls back to torch.

It applies to local sentence-transformers folders (the bundled MiniLM) with mean pooling
and normalisation, on CPU. Ingest keeps embedding with torch (batched, length-sorted).

>>> encoder = load_query_encoder(Path(embedder_path(DEFAULT_EMBEDDER)), cache)  # doctest: +SKIP
>>> len(encoder("sparse attention for long documents"))      # doctest: +SKIP
384
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .compute_thread import run_on_compute_thread

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PROBE = "Sparse mixture-of-experts layers route each token to 2 of 64 experts."
_TOLERANCE = 1e-4
_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json")
_LOCK = threading.Lock()
_CACHE: dict[tuple[str, str], "OnnxEncoder | None"] = {}


class OnnxEncoder:
    """``encoder(text)`` → one normalised vector; ``encoder.embed(texts)`` → several."""

    def __init__(self, folder: Path, graph: Path, max_length: int, lower: bool):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = min(os.cpu_count() or 1, 4)
        options.log_severity_level = 3
        # Its threads would otherwise spin after each question, taking the cores from the
        # model's prefill that follows at once.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self._wanted = {i.name for i in self._session.get_inputs()}
        self._tokenizer = _fast_tokenizer(folder, max_length)
        self._lower = lower

    def __call__(self, text: str) -> list[float]:
        return self.embed([text])[0]

    def embed(self, texts: list[str]) -> list[list[float]]:
        texts = [t.lower() for t in texts] if self._lower else list(texts)
        encodings = self._tokenizer.encode_batch(texts)
        batch = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                 "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                 "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}
        feed = {n: batch[n] for n in _INPUTS if n in self._wanted}
        hidden = self._session.run(None, feed)[0]
        mask = batch["attention_mask"][..., None].astype(hidden.dtype)
        vecs = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return vecs.tolist()


def _fast_tokenizer(folder: Path, max_length: int) -> Any:
    """The model's ``tokenizer.json`` through the ``tokenizers`` library itself (what
    transformers' fast tokenizer wraps, without importing transformers: seconds saved in a
    fresh process), set up as sentence-transformers calls it: truncated to ``max_length``,
    padded to the longest text of the batch."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    padding = tokenizer.padding or {}
    pad_token = padding.get("pad_token") or _special_token(folder, "pad_token") or "[PAD]"
    pad_id = tokenizer.token_to_id(pad_token)
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=padding.get("pad_id", 0) if pad_id is None else pad_id,
                             pad_type_id=padding.get("pad_type_id", 0), pad_token=pad_token)
    return tokenizer


def _special_token(folder: Path, name: str) -> str | None:
    for file in ("special_tokens_map.json", "tokenizer_config.json"):
        try:
            value = json.loads((folder / file).read_text()).get(name)
        except (OSError, ValueError):
            continue
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            return value
    return None


def load_query_encoder(folder: Path, cache_dir: Path) -> OnnxEncoder | None:
    """The ONNX encoder of the sentence-transformers model in ``folder``, exported once into
    ``cache_dir``; ``None`` when the model is not a local mean-pooling one (or the export
    fails, with a warning). Whether it should be used is ``rag.embedding.Embedder``'s call."""
    shape = _model_shape(folder)
    if shape is None:
        return None
    key = (str(cache_dir), _fingerprint(folder))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _build(folder, cache_dir / key[1], *shape)
        return _CACHE[key]


def _model_shape(folder: Path) -> tuple[int, bool] | None:
    """``(max tokens, lower-case?)`` of a transformer → mean pooling → normalise model."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        config = json.loads((folder / "sentence_bert_config.json").read_text())
    except (OSError, ValueError):
        return None
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    mean = pooling.get("pooling_mode") == "mean" or pooling.get("pooling_mode_mean_tokens")
    if kinds != ["Transformer", "Pooling", "Normalize"] or not mean:
        return None
    if not (folder / "tokenizer.json").exists():
        return None
    return int(config.get("max_seq_length") or 512), bool(config.get("do_lower_case"))


def _fingerprint(folder: Path) -> str:
    """Changes whenever the embedder's weights, configuration or tokenizer files do."""
    h = hashlib.sha256(str(folder.resolve()).encode())
    for name in _WEIGHTS:
        if (f := folder / name).exists():
            st = f.stat()
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _build(folder: Path, stem: Path, max_length: int, lower: bool) -> OnnxEncoder | None:
    graph, reference = stem.with_suffix(".onnx"), stem.with_suffix(".json")
    try:
        if (encoder := _checked(folder, graph, reference, max_length, lower)) is not None:
            return encoder
        graph.unlink(missing_ok=True)  # missing, stale or damaged: export again, once
        reference.unlink(missing_ok=True)
        run_on_compute_thread(_export, folder, graph, reference)  # torch: see rag.compute_thread
        if (encoder := _checked(folder, graph, reference, max_length, lower)) is not None:
            return encoder
        raise RuntimeError("the ONNX export disagrees with torch")
    except Exception as exc:  # noqa: BLE001 - torch still works; say why it is slower
        warnings.warn(f"fast question embedding unavailable ({type(exc).__name__}: {exc}); "
                      "using torch", stacklevel=2)
        return None


def _checked(folder: Path, graph: Path, reference: Path, max_length: int, lower: bool) -> OnnxEncoder | None:
    """The export as an encoder, if it loads and reproduces the reference vector."""
    try:
        expected = np.asarray(json.loads(reference.read_text())["probe"])
        encoder = OnnxEncoder(folder, graph, max_length, lower)
        got = np.asarray(encoder(_PROBE))
    except Exception:  # noqa: BLE001 - unreadable or missing: the caller re-exports
        return None
    return encoder if got.shape == expected.shape and np.abs(got - expected).max() < _TOLERANCE else None


def _export(folder: Path, graph: Path, reference: Path) -> None:
    """Export the transformer with torch (once), and store torch's vector for the probe."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")

    class LastHiddenState(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state

    sample = model.tokenizer([_PROBE, "a"], return_tensors="pt", padding=True)
    graph.parent.mkdir(parents=True, exist_ok=True)
    tmp = graph.with_suffix(f".{os.getpid()}.tmp")
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHiddenState(model[0].auto_model.eval()), tuple(sample[n] for n in _INPUTS),
            str(tmp), input_names=list(_INPUTS), output_names=["last_hidden_state"],
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )
    os.replace(tmp, graph)
    probe = model.encode([_PROBE], normalize_embeddings=True)[0].tolist()
    tmp_ref = reference.with_suffix(f".{os.getpid()}.tmp")
    tmp_ref.write_text(json.dumps({"probe": probe}))
    os.replace(tmp_ref, reference)  # last: a reference only exists beside a whole graph
