"""The errors ragmem shows to users.

Library code raises only these for problems a user can fix; every message names the
offending value and says what to do. Any other exception is a bug and keeps its traceback.
Only the CLI turns them into ``Error: ...`` on stderr and an exit code.

    RagMemoryError
    ├── ConfigError            a setting or argument has a bad value
    ├── LoaderError            one file could not be read (a per-file failure during ingest)
    ├── EmbedderError          the embedding model cannot be loaded or used
    ├── EmbedderMismatchError  the collection was built with another embedder
    ├── StoreError             the Chroma store or the manifest cannot be opened or written
    ├── IngestError            an ingest run cannot start (bad path, nothing to read)
    ├── GenerationError        the generator cannot be loaded or fails
    ├── ModelDownloadError     ``ragmem models pull`` could not fetch or verify a model
    └── MemoryStoreError       the conversation memory cannot be read or written
"""

from __future__ import annotations


class RagMemoryError(Exception):
    """Base class of every error meant for the user."""

    exit_code = 1


class ConfigError(RagMemoryError):
    """A setting, flag or argument has a value ragmem cannot use."""


class LoaderError(RagMemoryError):
    """A single file could not be loaded; ingest records it and carries on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class EmbedderError(RagMemoryError):
    """The embedding model cannot be loaded or used."""


class EmbedderMismatchError(RagMemoryError):
    """The configured embedder is not the one the collection was built with."""


class StoreError(RagMemoryError):
    """The vector store or the manifest cannot be opened or written."""


class IngestError(RagMemoryError):
    """An ingest run cannot start or cannot go on."""


class GenerationError(RagMemoryError):
    """The generator cannot be loaded or failed."""


class ModelDownloadError(RagMemoryError):
    """A model could not be downloaded or failed verification; nothing half-done is usable."""


class MemoryStoreError(RagMemoryError):
    """The conversation memory cannot be read or written."""


__all__ = [
    "ConfigError",
    "EmbedderError",
    "EmbedderMismatchError",
    "GenerationError",
    "IngestError",
    "LoaderError",
    "MemoryStoreError",
    "ModelDownloadError",
    "RagMemoryError",
    "StoreError",
]
