"""ragmem: local-first retrieval-augmented generation with long-term knowledge and memory.

Importing this package is cheap: torch, transformers, chromadb and LangChain load only when a
model, a store or an adapter is first used. ``RagPipeline`` and ``AnswerStream`` are imported on
first access.

Example:
    >>> from rag_memory import RagPipeline
    >>> rag = RagPipeline()
    >>> rag.ask("How are deleted files handled?", session_id="s1").answer
"""

from typing import TYPE_CHECKING, Any

from rag_memory.config import Settings
from rag_memory.errors import (
    ConfigError,
    EmbedderError,
    EmbedderMismatchError,
    GenerationError,
    IngestError,
    LoaderError,
    MemoryStoreError,
    RagMemoryError,
    StoreError,
)
from rag_memory.schema import Answer, Chunk, Hit, IngestReport, Memory, Source, StoreStatus, Turn

if TYPE_CHECKING:
    from rag_memory.pipelines.rag import AnswerStream, RagPipeline

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "AnswerStream",
    "Chunk",
    "ConfigError",
    "EmbedderError",
    "EmbedderMismatchError",
    "GenerationError",
    "Hit",
    "IngestError",
    "IngestReport",
    "LoaderError",
    "Memory",
    "MemoryStoreError",
    "RagMemoryError",
    "RagPipeline",
    "Settings",
    "Source",
    "StoreError",
    "StoreStatus",
    "Turn",
    "__version__",
]

_LAZY = {"RagPipeline": "rag_memory.pipelines.rag", "AnswerStream": "rag_memory.pipelines.rag"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rag_memory' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
