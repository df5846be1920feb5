"""The knowledge base: a Chroma collection in cosine space that ragmem embeds for.

Embedded (``PersistentClient`` under the ragmem home) or a Chroma server (``HttpClient``),
through the same code. Chroma never embeds anything itself: every write and query carries
ragmem's own vectors. Cosine distance becomes similarity in ``distance_to_score`` only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rag_memory.errors import EmbedderMismatchError, StoreError
from rag_memory.home import private_dir, tighten_tree
from rag_memory.knowledge_base.chroma_import import import_chromadb
from rag_memory.knowledge_base.filters import filter_errors
from rag_memory.locking import HomeLock
from rag_memory.schema import Chunk, Hit

log = logging.getLogger(__name__)

EMBEDDER_KEY = "ragmem:embedder"
DIMENSION_KEY = "ragmem:dimension"

# Embedded Chroma keeps each collection's vector index in the memory of every process that
# opened it and never reloads it, so a process's view of a collection another process wrote
# stays stale (count() grows, query() does not), and a stale writer overwrites the other's
# vectors. Each write under the home's write lock therefore leaves a stamp per collection
# (``<chroma>/ragmem-stamps/<collection>``: the writing process and a counter); a process that
# finds a stamp it did not leave re-opens its Chroma system before it reads or writes.
_STAMP_DIR = "ragmem-stamps"
_PROCESS = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
_REOPEN_LOCK = threading.RLock()
_EPOCHS: dict[str, int] = {}  # chroma folder -> how many times this process re-opened it
_SEEN: dict[tuple[str, str], str | None] = {}  # (chroma folder, collection) -> stamp our view has
_WRITES = [0]


def distance_to_score(distance: float) -> float:
    """Chroma's cosine distance (1 - cos) as cosine similarity; the one place this happens."""
    return 1.0 - float(distance)


def chroma_client(*, path: Path | None = None, url: str | None = None):
    """A Chroma client: a server when ``url`` is given, else embedded at ``path``."""
    chromadb = import_chromadb()
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    try:
        if url:
            parsed = urlparse(url)
            port = parsed.port or (443 if parsed.scheme == "https" else 8000)
            client = chromadb.HttpClient(
                host=parsed.hostname or "localhost",
                port=port,
                ssl=parsed.scheme == "https",
                settings=settings,
            )
            client.heartbeat()
            return client
        assert path is not None
        private_dir(path)
        client = chromadb.PersistentClient(path=str(path), settings=settings)
        tighten_tree(path)
        return client
    except Exception as exc:
        where = url or str(path)
        hint = (
            "check that `chroma run` is serving there, or unset chroma_url / RAGMEM_CHROMA_URL"
            if url
            else "check the folder's permissions and free space, or set RAGMEM_HOME elsewhere"
        )
        raise StoreError(f"cannot open the Chroma store at {where}: {exc}. {hint}.") from exc


class ChromaStore:
    """One Chroma collection holding chunks and their vectors.

    Args:
        collection: The collection's name.
        path: Folder of the embedded store (ignored when ``url`` is set).
        url: A Chroma server, e.g. ``http://127.0.0.1:8000``.
    """

    def __init__(
        self, collection: str, *, path: Path | None = None, url: str | None = None, lock: HomeLock | None = None
    ) -> None:
        if path is None and url is None:
            raise StoreError("ChromaStore needs a path (embedded) or a url (server)")
        self.name = collection
        self.path = path
        self.url = url
        # Embedded writes take the home's write lock (the home holds the chroma folder).
        self.lock = None if url else (lock or HomeLock(Path(path).parent))
        self._client = None
        self._collection = None
        self._epoch = 0

    @property
    def location(self) -> str:
        return self.url or str(self.path)

    @property
    def client(self):
        if self._client is not None and self.url is None and self._epoch != _EPOCHS.get(self._key, 0):
            self._client = self._collection = None  # this process re-opened the folder
        if self._client is None:
            if self.url is None and not (self.path / "chroma.sqlite3").exists() and self.lock is not None:
                # Two processes creating one store at once trip over each other's schema.
                with self.lock.hold(f"create the store {self.path}"):
                    self._client = chroma_client(path=self.path, url=self.url)
            else:
                self._client = chroma_client(path=self.path, url=self.url)
            self._epoch = _EPOCHS.get(self._key, 0)
        return self._client

    # -- other processes' writes -------------------------------------------------------
    @property
    def _key(self) -> str:
        return os.path.abspath(self.path) if self.path is not None else ""

    def _stamp_path(self) -> Path:
        return Path(self.path) / _STAMP_DIR / self.name

    def _read_stamp(self) -> str | None:
        try:
            return self._stamp_path().read_text(encoding="ascii").strip() or None
        except (OSError, UnicodeDecodeError):
            return None

    def _refresh_if_stale(self) -> None:
        """Re-open this process's Chroma system if another process wrote the collection since
        this process's view of it was loaded."""
        if self.url is not None:
            return
        key = (self._key, self.name)
        stamp = self._read_stamp()
        with _REOPEN_LOCK:
            if key not in _SEEN:
                # The view loads now (or loaded with the system): it holds what is stamped now.
                _SEEN[key] = stamp
                return
            if _SEEN[key] == stamp or (stamp or "").startswith(_PROCESS + ":"):
                return
            log.debug("collection %r was written by another process; re-opening %s", self.name, self.path)
            import_chromadb()
            from chromadb.api.shared_system_client import SharedSystemClient

            # Drop the cached system without stopping it: a thread still using the old one
            # finishes on it; the next client for this folder loads the collections afresh.
            with SharedSystemClient._refcount_lock:
                SharedSystemClient._identifier_to_system.pop(str(self.path), None)
            _EPOCHS[self._key] = _EPOCHS.get(self._key, 0) + 1
            for seen in [k for k in _SEEN if k[0] == self._key]:
                del _SEEN[seen]
            _SEEN[key] = stamp
        self._client = self._collection = None

    def _leave_stamp(self) -> None:
        _WRITES[0] += 1
        stamp = f"{_PROCESS}:{_WRITES[0]}"
        path = self._stamp_path()
        try:
            private_dir(path.parent)
            tmp = path.with_name(f".{path.name}.{_PROCESS}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(stamp)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot record a write to %s (%s); other processes may read a stale view", path, exc)
            return
        with _REOPEN_LOCK:
            _SEEN[(self._key, self.name)] = stamp

    @contextlib.contextmanager
    def _writing(self, doing: str) -> Iterator[None]:
        """Hold the home's write lock (embedded only) with a fresh view, and stamp the write."""
        if self.lock is None:
            yield
            return
        with self.lock.hold(doing):
            self._refresh_if_stale()
            try:
                yield
            finally:
                self._leave_stamp()

    # -- the collection ----------------------------------------------------------------
    def _existing(self):
        if self.url is None:
            self._refresh_if_stale()
        if self._collection is not None and self.url is None and self._epoch != _EPOCHS.get(self._key, 0):
            self._client = self._collection = None
        if self._collection is None:
            if self.url is None and not (self.path / "chroma.sqlite3").exists():
                return None  # nothing stored yet; reading must not create the store
            import_chromadb()
            from chromadb.errors import NotFoundError

            try:
                self._collection = self.client.get_collection(self.name, embedding_function=None)
            except (NotFoundError, ValueError):
                return None
        return self._collection

    def exists(self) -> bool:
        return self._existing() is not None

    def bound_embedder(self) -> tuple[str | None, int | None]:
        """The embedder id and dimension the collection was built with, if any."""
        col = self._existing()
        if col is None:
            return None, None
        meta = col.metadata or {}
        dim = meta.get(DIMENSION_KEY)
        return meta.get(EMBEDDER_KEY), int(dim) if dim is not None else None

    def check_embedder(self, embedder_id: str, dimension: int | None = None) -> None:
        """Refuse to mix vectors of two embedders in one collection."""
        bound, bound_dim = self.bound_embedder()
        if bound is None:
            return
        if bound != embedder_id or (dimension is not None and bound_dim not in (None, dimension)):
            raise EmbedderMismatchError(
                f"collection {self.name!r} at {self.location} was built with embedder {bound!r}"
                f" ({bound_dim} dimensions), but the configured embedder is {embedder_id!r}"
                f"{f' ({dimension} dimensions)' if dimension else ''}. Either set embedder = {bound!r}"
                f" again, or rebuild the collection with the new one: ragmem ingest PATH --rebuild"
                f" (or use another collection with --collection NAME)."
            )

    def open_for_writing(self, embedder_id: str, dimension: int):
        """The collection, created and bound to the embedder on first use."""
        self.check_embedder(embedder_id, dimension)
        col = self._existing()
        if col is None:
            with self._writing(f"create collection {self.name}"):
                col = self.client.get_or_create_collection(
                self.name,
                    configuration={"hnsw": {"space": "cosine"}},
                    metadata={EMBEDDER_KEY: embedder_id, DIMENSION_KEY: dimension},
                    embedding_function=None,
                )
                self._collection = col
        return col

    def drop(self) -> bool:
        """Delete the whole collection; True if there was one."""
        if self._existing() is None:
            return False
        with self._writing(f"drop collection {self.name}"):
            self.client.delete_collection(self.name)
            self._collection = None
        return True

    # -- writes ------------------------------------------------------------------------
    def _batch_size(self) -> int:
        try:
            return max(1, int(self.client.get_max_batch_size()))
        except Exception:  # older servers do not report it
            return 5000

    def upsert(
        self,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
        *,
        embedder_id: str,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Write knowledge-base chunks and their vectors (same ids overwrite).

        ``extra`` is added to every chunk's metadata.
        """
        self.upsert_records(
            [c.id for c in chunks],
            [c.text for c in chunks],
            vectors,
            [{**c.metadata(embedder_id), **(extra or {})} for c in chunks],
            embedder_id=embedder_id,
        )

    def upsert_records(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Mapping[str, Any]],
        *,
        embedder_id: str,
    ) -> None:
        """Write any records (ids, texts, vectors, metadata), batched under the client's limit."""
        if not len(ids) == len(texts) == len(vectors) == len(metadatas):
            raise ValueError(f"{len(ids)} ids, {len(texts)} texts, {len(vectors)} vectors, {len(metadatas)} metadatas")
        if not ids:
            return
        with self._writing(f"write {len(ids)} records to {self.name}"):
            col = self.open_for_writing(embedder_id, len(vectors[0]))
            step = self._batch_size()
            for start in range(0, len(ids), step):
                end = start + step
                col.upsert(
                    ids=list(ids[start:end]),
                    embeddings=[list(v) for v in vectors[start:end]],
                    documents=list(texts[start:end]),
                    metadatas=[dict(m) for m in metadatas[start:end]],
                )
            self._keep_private()

    def _keep_private(self) -> None:
        """Chroma writes its segment files with the umask's mode; the home stays owner-only."""
        if self.url is None and self.path is not None:
            tighten_tree(self.path)

    def update_metadata(self, ids: Sequence[str], metadatas: Sequence[Mapping[str, Any]]) -> None:
        """Replace stored records' metadata, keeping their text and vectors."""
        if len(ids) != len(metadatas):
            raise ValueError(f"{len(ids)} ids, {len(metadatas)} metadatas")
        if not ids or self._existing() is None:
            return
        with self._writing(f"update {len(ids)} records of {self.name}"):
            col = self._existing()
            if col is None:
                return
            step = self._batch_size()
            for start in range(0, len(ids), step):
                col.update(
                    ids=list(ids[start : start + step]), metadatas=[dict(m) for m in metadatas[start : start + step]]
                )

    def delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        if not ids or self._existing() is None:
            return
        with self._writing(f"delete {len(ids)} records from {self.name}"):
            col = self._existing()
            if col is None:
                return
            step = self._batch_size()
            for start in range(0, len(ids), step):
                col.delete(ids=ids[start : start + step])

    # -- reads -------------------------------------------------------------------------
    def count(self) -> int:
        col = self._existing()
        return 0 if col is None else int(col.count())

    def ids(self, where: Mapping[str, Any] | None = None) -> set[str]:
        """Every record id in the collection, or those matching ``where`` (paged)."""
        col = self._existing()
        if col is None:
            return set()
        out: set[str] = set()
        page = 10_000
        offset = 0
        while True:
            with filter_errors(where):
                got = col.get(where=dict(where) if where else None, include=[], limit=page, offset=offset)
            out.update(got["ids"])
            if len(got["ids"]) < page:
                return out
            offset += page

    def has_ids(self, ids: Sequence[str]) -> set[str]:
        col = self._existing()
        if col is None or not ids:
            return set()
        return set(col.get(ids=list(ids), include=[])["ids"])

    def get_records(
        self, *, where: Mapping[str, Any] | None = None, ids: Sequence[str] | None = None, limit: int | None = None
    ) -> list[Hit]:
        """Stored records matching a metadata filter or ids, without ranking (score 0)."""
        col = self._existing()
        if col is None:
            return []
        with filter_errors(where):
            got = col.get(
                ids=list(ids) if ids is not None else None,
                where=dict(where) if where else None,
                limit=limit,
                include=["documents", "metadatas"],
            )
        return [
            self._hit(cid, text, meta, 0.0)
            for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        ]

    def delete_where(self, where: Mapping[str, Any]) -> int:
        """Delete every record matching a metadata filter; returns how many."""
        if self._existing() is None:
            return 0
        with self._writing(f"delete records from {self.name}"):
            col = self._existing()
            if col is None:
                return 0
            with filter_errors(where):
                ids = col.get(where=dict(where), include=[])["ids"]
            self.delete(ids)
        return len(ids)

    @staticmethod
    def _hit(cid: str, text: str | None, meta: Mapping[str, Any] | None, score: float) -> Hit:
        meta = dict(meta or {})
        return Hit(
            chunk_id=cid,
            text=text or "",
            score=score,
            source=str(meta.get("source", "")),
            page=meta.get("page"),
            title=meta.get("title"),
            metadata=meta,
        )

    def query(
        self,
        vector: Sequence[float],
        *,
        k: int,
        where: Mapping[str, Any] | None = None,
        min_score: float = -1.0,
    ) -> list[Hit]:
        """The ``k`` chunks most similar to ``vector``, best first, at or above ``min_score``."""
        result = self._nearest(vector, k, where, ["documents", "metadatas", "distances"])
        if result is None:
            return []
        hits = []
        for cid, text, meta, dist in zip(
            result["ids"][0], result["documents"][0], result["metadatas"][0], result["distances"][0], strict=True
        ):
            score = distance_to_score(dist)
            if score >= min_score:
                hits.append(self._hit(cid, text, meta, score))
        return hits

    def rank(
        self, vector: Sequence[float], *, k: int, where: Mapping[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """``query`` without reading the chunks: (chunk id, cosine similarity) pairs, best first.

        Reading 50 chunks' texts and metadata costs several times the vector search itself;
        the hybrid retriever reads only the few it returns.
        """
        result = self._nearest(vector, k, where, ["distances"])
        if result is None:
            return []
        return [(cid, distance_to_score(d)) for cid, d in zip(result["ids"][0], result["distances"][0], strict=True)]

    def _nearest(self, vector: Sequence[float], k: int, where: Mapping[str, Any] | None, include: list[str]):
        col = self._existing()
        if col is None:
            return None
        # Chroma returns fewer than n_results when the collection holds fewer (no count() first:
        # it reads the whole collection's row count, ~10 ms at 100k chunks).
        with filter_errors(where):
            return col.query(
                query_embeddings=[list(vector)], n_results=max(1, int(k)), where=dict(where) if where else None,
                include=include,
            )
