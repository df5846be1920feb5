"""The progress callbacks an ingest run makes (a display implements them; the default is silent).

Its own module so that a display can subclass it without importing the ingest machinery.
"""

from __future__ import annotations


class IngestProgress:
    """Callbacks for a progress display; the default does nothing."""

    def planned(self, files: int) -> None:
        """``files`` files will be loaded and embedded."""

    def file_done(self, path: str) -> None:
        """One file was loaded and chunked (or failed)."""

    def chunks_planned(self, n: int) -> None:
        """``n`` more chunks are to be embedded (called as each file is chunked)."""

    def chunks_embedded(self, n: int) -> None:
        """``n`` more chunks were embedded."""
