"""The ``ragmem`` command line: parse, call the library, print."""

from rag_memory.cli.app import app

__all__ = ["app"]
