"""Pick the device a model runs on, and load models quietly; shared by the embedders, the
reranker and the generator."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

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


def gpu_present() -> bool:
    """Whether this machine may have an NVIDIA GPU, answered without importing torch.

    Used where importing torch just to ask would cost more than the work (the ONNX embedder
    on a CPU-only machine): it looks for the NVIDIA driver, and honours CUDA_VISIBLE_DEVICES
    set to nothing (or -1) as "no GPU". A yes is checked properly by ``resolve_device`` later.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")


@contextmanager
def quiet_model_loading():
    """Load models without transformers' "Loading weights" progress bars: the library prints
    nothing on its own. They show again when ragmem logs at DEBUG (``--verbose``)."""
    if logging.getLogger("rag_memory").isEnabledFor(logging.DEBUG):
        yield
        return
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
