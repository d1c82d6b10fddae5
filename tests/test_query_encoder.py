"""The ONNX Runtime encoder gives the embedder's own vectors, survives a damaged cache,
and steps aside when it does not apply."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from rag import query_encoder
from rag.config import Settings
from rag.embedding import Embedder

TEXTS = [
    "Which architecture outputs positions in its input sequence?",
    "What BLEU did the model reach on WMT 2014 English-to-German?",
    "über die Größe von Sprachmodellen — 410M Parameter?",
    "x",
    "attention " * 400,  # longer than the embedder's 256-token window: truncated alike
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("model-cache")


def close(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and float(np.abs(a - b).max()) < 1e-4


def test_same_vectors_as_the_embedder(embedder, cache_dir) -> None:
    encode = Embedder(Settings(model_cache_dir=cache_dir)).fast_encoder
    assert encode is not None
    for text in TEXTS:
        assert close(encode(text), embedder.get_query_embedding(text)), text
    # a padded batch gives each text its own vector
    assert close(encode.embed(TEXTS), embedder.get_text_embedding_batch(TEXTS))
    files = sorted(p.suffix for p in (cache_dir / "embedders").iterdir())
    assert files == [".json", ".onnx"]  # no temporary file left behind


def test_tokens_are_the_embedders_own() -> None:
    """The encoder tokenises with ``tokenizers`` directly (no transformers import); ids,
    masks and padding equal transformers' tokenizer of the model, as sentence-transformers
    calls it, over the seed listings' lines and the awkward texts above."""
    from pathlib import Path

    from transformers import AutoTokenizer

    from rag.config import DEFAULT_EMBEDDER
    from rag.embedding import embedder_path

    folder = Path(embedder_path(DEFAULT_EMBEDDER))
    seeds = sorted((Path(__file__).resolve().parent.parent / "data" / "seeds").iterdir())
    texts = [line for f in seeds[:4] for line in f.read_text().splitlines() if line.strip()][:300] + TEXTS
    reference = AutoTokenizer.from_pretrained(str(folder))
    ours = query_encoder._fast_tokenizer(folder, 256)
    for i in range(0, len(texts), 8):
        batch = texts[i:i + 8]
        want = reference(batch, padding=True, truncation=True, max_length=256)
        got = ours.encode_batch(batch)
        assert [e.ids for e in got] == want["input_ids"], batch
        assert [e.attention_mask for e in got] == want["attention_mask"]
        assert [e.type_ids for e in got] == want["token_type_ids"]


def test_damaged_export_is_rebuilt(embedder, tmp_path) -> None:
    settings = Settings(model_cache_dir=tmp_path)
    assert Embedder(settings).fast_encoder is not None
    (graph,) = (tmp_path / "embedders").glob("*.onnx")
    graph.write_bytes(b"not an onnx graph")
    query_encoder._CACHE.clear()  # as in a new process
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt quietly: no fallback to torch
        encode = Embedder(settings).fast_encoder
    assert encode is not None and graph.stat().st_size > 1_000_000
    assert close(encode(TEXTS[0]), embedder.get_query_embedding(TEXTS[0]))


def test_steps_aside_when_it_does_not_apply(embedder, tmp_path) -> None:
    assert Embedder(Settings(onnx_queries=False, model_cache_dir=tmp_path)).fast_encoder is None
    # an injected embedder that is not the settings' model built the index: use it, not ONNX
    assert Embedder(Settings(model_cache_dir=tmp_path), model=object()).fast_encoder is None
    assert not (tmp_path / "embedders").exists()
    assert Embedder(Settings(model_cache_dir=tmp_path), model=embedder).fast_encoder is not None


def test_documents_are_embedded_in_fp16_with_large_batches_on_cuda_only() -> None:
    import torch

    from rag.embedding import GPU_BATCH, embed_options

    assert embed_options("cpu", 32) == {"embed_batch_size": 32}
    assert embed_options("mps", 64) == {"embed_batch_size": 64}
    assert embed_options("cuda", 32) == {"embed_batch_size": GPU_BATCH, "model_kwargs": {"dtype": torch.float16}}
    assert embed_options("cuda", 1024)["embed_batch_size"] == 1024  # a larger setting is kept


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA GPU")
def test_cuda_embeddings_match_the_cpu_ones(embedder) -> None:
    import torch

    from rag.embedding import load_embedder

    texts = TEXTS * 20
    gpu = load_embedder(Settings(device="cuda"))
    assert next(gpu._model.parameters()).dtype == torch.float16
    cpu_vecs = np.asarray(embedder.get_text_embedding_batch(texts))
    gpu_vecs = np.asarray(gpu.get_text_embedding_batch(texts))
    assert (cpu_vecs * gpu_vecs).sum(axis=1).min() > 0.999
