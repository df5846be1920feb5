"""``ragmem serve``: an HTTP server over the RAG pipeline (needs the ``ragmem[server]`` extra).

    create_app(pipeline, keys=..., options=...)   the FastAPI app
    ApiKeys, ServerOptions                        who may call it, and its limits
"""

from rag_memory.server.app import ServerOptions, create_app
from rag_memory.server.auth import ApiKeys

__all__ = ["ApiKeys", "ServerOptions", "create_app"]
