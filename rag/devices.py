"""Where models run: one device choice for the embedder and the generator alike.

``auto`` takes CUDA (bf16 where supported, else fp16), then Apple's MPS (fp16), then the CPU
(fp32, or int8 for the generator); ``cuda`` or ``mps`` on a machine without it is a
``ModelError`` that says what to use instead.

Asking torch costs its import (2 to 4 s on a small CPU), so where the answer is certain
without it (``cpu`` asked for, or a CPU-only torch build on a machine with no GPU driver)
the plan is made without importing torch: a question embedded by ONNX Runtime then never
loads torch at all.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .errors import ModelError


@dataclass(frozen=True)
class DevicePlan:
    device: str  # "cuda", "mps" or "cpu"
    dtype: str  # torch dtype name
    quantize: bool  # dynamic int8 (CPU only)


def pick_device(requested: str, *, cuda: bool, bf16: bool, mps: bool, quantize: bool) -> DevicePlan:
    """Pure choice: CUDA (bf16 if supported, else fp16), then MPS (fp16), then CPU (fp32/int8)."""
    if requested == "cuda" and not cuda or requested == "mps" and not mps:
        raise ModelError(f"device '{requested}' is not available here; use device 'auto' or 'cpu'")
    if requested in ("auto", "cuda") and cuda:
        return DevicePlan("cuda", "bfloat16" if bf16 else "float16", False)
    if requested in ("auto", "mps") and mps:
        return DevicePlan("mps", "float16", False)
    return DevicePlan("cpu", "float32", quantize)


#: Device nodes of a GPU driver (NVIDIA, AMD ROCm, CUDA under WSL): on Linux, torch can
#: only see a GPU where one of them exists.
GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def cpu_only() -> bool:
    """True where no GPU can be available, known without importing torch: torch's own
    ``+cpu`` build, or Linux without any GPU driver's device node. False means "ask torch"."""
    try:
        cpu_build = metadata.version("torch").endswith("+cpu")
    except metadata.PackageNotFoundError:
        cpu_build = False
    if cpu_build and sys.platform != "darwin":
        return True
    return sys.platform.startswith("linux") and not any(Path(p).exists() for p in GPU_DEVICE_NODES)


def device_plan(requested: str, quantize: bool = False) -> DevicePlan:
    """:func:`pick_device` for this machine (imports torch unless :func:`cpu_only`)."""
    if requested == "cpu" or requested == "auto" and cpu_only():
        return pick_device(requested, cuda=False, bf16=False, mps=False, quantize=quantize)
    import torch

    mps, cuda = getattr(torch.backends, "mps", None), torch.cuda.is_available()
    return pick_device(requested, cuda=cuda, bf16=cuda and torch.cuda.is_bf16_supported(),
                       mps=bool(mps and mps.is_available()), quantize=quantize)
