"""The ONNX Runtime question encoder gives the embedder's own vectors, survives a damaged
cache, and steps aside when it does not apply."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from rag.config import Settings
from rag.query_encoder import load_query_encoder

QUESTIONS = [
    "Which architecture outputs positions in its input sequence?",
    "What BLEU did the model reach on WMT 2014 English-to-German?",
    "über die Größe von Sprachmodellen — 410M Parameter?",
    "x",
    "attention " * 400,  # longer than the embedder's 256-token window: truncated alike
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("model-cache")


def test_same_vectors_as_the_embedder(embedder, cache_dir) -> None:
    encode = load_query_encoder(Settings(model_cache_dir=cache_dir), embedder)
    assert encode is not None
    for q in QUESTIONS:
        fast = np.asarray(encode(q))
        reference = np.asarray(embedder.get_query_embedding(q))
        assert fast.shape == reference.shape == (384,)
        assert np.abs(fast - reference).max() < 1e-4, q
    assert len(list((cache_dir / "embedders").glob("*.onnx"))) == 1
    assert not list((cache_dir / "embedders").glob("*.tmp"))


def test_damaged_export_is_rebuilt(embedder, tmp_path) -> None:
    settings = Settings(model_cache_dir=tmp_path)
    assert load_query_encoder(settings, embedder) is not None
    (export,) = (tmp_path / "embedders").glob("*.onnx")
    export.write_bytes(b"not an onnx graph")
    from rag import query_encoder

    query_encoder._CACHE.clear()  # a new process
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt quietly, no fallback to torch
        encode = load_query_encoder(settings, embedder)
    assert encode is not None
    q = QUESTIONS[0]
    assert np.abs(np.asarray(encode(q)) - np.asarray(embedder.get_query_embedding(q))).max() < 1e-4
    assert export.stat().st_size > 1_000_000


def test_off_switch_and_retriever_fallback(embedder, tmp_path) -> None:
    assert load_query_encoder(Settings(onnx_queries=False, model_cache_dir=tmp_path), embedder) is None
    assert load_query_encoder(Settings(model_cache_dir=tmp_path), object()) is None
    assert not (tmp_path / "embedders").exists()

