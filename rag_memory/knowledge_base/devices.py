"""Pick the torch device a model runs on."""

from __future__ import annotations

from rag_memory.errors import ConfigError


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a CUDA GPU is usable, else ``cpu``; others are checked."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for, but no CUDA GPU is available; use 'auto' or 'cpu'")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise ConfigError(f"device {device!r} is not known; use auto, cpu, cuda or cuda:N")
    return device
