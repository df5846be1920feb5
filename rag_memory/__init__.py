"""ragmem: local-first retrieval-augmented generation with long-term knowledge and memory.

Importing this package is cheap: torch, transformers and chromadb load only when a model
or a store is first used.
"""

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
from rag_memory.schema import Chunk, Hit, IngestReport, Memory, Source, StoreStatus, Turn

__version__ = "0.1.0"

__all__ = [
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
    "Settings",
    "Source",
    "StoreError",
    "StoreStatus",
    "Turn",
    "__version__",
]
