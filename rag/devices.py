"""Where models run: one device choice for the embedder and the generator alike.

``auto`` takes CUDA (bf16 where supported, else fp16), then Apple's MPS (fp16), then the CPU
(fp32, or int8 for the generator); ``cuda`` or ``mps`` on a machine without it is a
``ModelError`` that says what to use instead.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def device_plan(requested: str, quantize: bool = False) -> DevicePlan:
    """:func:`pick_device` for this machine (imports torch)."""
    import torch

    mps, cuda = getattr(torch.backends, "mps", None), torch.cuda.is_available()
    return pick_device(requested, cuda=cuda, bf16=cuda and torch.cuda.is_bf16_supported(),
                       mps=bool(mps and mps.is_available()), quantize=quantize)
