"""Build ragmem's stages from the effective settings, lazily and once each."""

from __future__ import annotations

from functools import cached_property

from rag_memory.config import Settings
from rag_memory.ingest.manifest import Manifest
from rag_memory.knowledge_base.embedders import Embedder, make_embedder
from rag_memory.knowledge_base.retrievers import DenseRetriever
from rag_memory.knowledge_base.store import ChromaStore
from rag_memory.locking import HomeLock
from rag_memory.schema import StoreStatus


class Components:
    """The stages a command needs, built from settings on first use.

    Every attribute can be replaced before use (tests pass fakes that way).
    """

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None) -> None:
        self.settings = settings
        if embedder is not None:
            self.embedder = embedder

    @cached_property
    def embedder(self) -> Embedder:
        s = self.settings
        return make_embedder(
            s.embedder, device=s.device, batch_size=s.embed_batch_size, cache_dir=s.cache_path / "onnx",
            allow_downloads=s.allow_downloads,
        )

    @cached_property
    def write_lock(self) -> HomeLock:
        """The home's write lock, taken around every embedded Chroma write (see ``rag_memory.locking``)."""
        return HomeLock(self.settings.home, timeout=self.settings.lock_timeout)

    @cached_property
    def store(self) -> ChromaStore:
        s = self.settings
        return ChromaStore(
            s.collection, path=None if s.chroma_url else s.chroma_path, url=s.chroma_url, lock=self.write_lock
        )

    @cached_property
    def manifest(self) -> Manifest:
        return Manifest(self.settings.manifest_path, self.settings.collection)

    @cached_property
    def dense_retriever(self) -> DenseRetriever:
        s = self.settings
        return DenseRetriever(self.store, self.embedder, top_k=s.top_k, sources=self.manifest.sources)

    @cached_property
    def lexical(self):
        """The collection's BM25 index (SQLite FTS5 under the home), kept in step by ingest."""
        from rag_memory.knowledge_base.keyword_index import BM25Index

        return BM25Index(self.settings.lexical_path, self.settings.collection)

    @cached_property
    def retriever(self):
        """The knowledge-base retriever: hybrid BM25 + dense by default (``retrieval_mode``)."""
        from rag_memory.knowledge_base.hybrid import HybridRetriever

        s = self.settings
        reranker = None
        if s.rerank_model:
            from rag_memory.knowledge_base.rerank import CrossEncoderReranker

            reranker = CrossEncoderReranker(s.rerank_model, device=s.device, allow_downloads=s.allow_downloads)
        return HybridRetriever(
            self.dense_retriever,
            self.lexical,
            mode=s.retrieval_mode,
            top_k=s.top_k,
            min_score=None if s.min_score <= -1.0 else s.min_score,
            candidates=s.hybrid_candidates,
            languages=s.embedder_languages,
            mmr=s.mmr,
            mmr_lambda=s.mmr_lambda,
            reranker=reranker,
            rerank_candidates=s.rerank_candidates,
        )

    @cached_property
    def history(self):
        from rag_memory.memory.history import ChatHistory

        return ChatHistory(self.settings.history_path)

    @cached_property
    def long_term(self):
        from rag_memory.memory.long_term import LongTermMemory

        s = self.settings
        store = ChromaStore(
            s.memory_collection, path=None if s.chroma_url else s.chroma_path, url=s.chroma_url, lock=self.write_lock
        )
        from rag_memory.knowledge_base.keyword_index import BM25Index

        return LongTermMemory(
            store, self.embedder, recency_weight=s.memory_recency_weight, half_life_days=s.memory_half_life_days,
            keyword=BM25Index(s.lexical_path, s.memory_collection),
        )

    @cached_property
    def memory(self):
        """Conversation memory (history, long-term units, entities) behind one facade."""
        from rag_memory.memory.service import MemoryService

        s = self.settings
        from rag_memory.memory.graph import EntityGraph

        return MemoryService(
            self.history, self.long_term, graph=EntityGraph(s.entities_path), budget_tokens=s.memory_budget_tokens,
            top_k=s.memory_top_k, min_score=s.memory_min_score, languages=s.embedder_languages,
        )

    @cached_property
    def generation(self):
        """The generator selection (see ``rag_memory.generation.select``)."""
        from rag_memory.generation.select import select_generator

        return select_generator(self.settings)

    @property
    def embedder_languages(self) -> frozenset[str]:
        """The scripts the configured embedder reads (its name, or the embedder_languages setting)."""
        from rag_memory.knowledge_base.hybrid import embedder_languages

        return embedder_languages(self.embedder.model_id, self.settings.embedder_languages)

    def ingestor(self):
        from rag_memory.ingest.run import Ingestor

        s = self.settings
        return Ingestor(
            self.store,
            self.manifest,
            self.embedder,
            lexical=self.lexical,
            chunk_tokens=s.chunk_tokens,
            chunk_overlap=s.chunk_overlap,
            lock=HomeLock(s.home, f"ingest-{s.collection}", timeout=s.lock_timeout),
            max_file_bytes=int(s.max_file_mb * 1_000_000) if s.max_file_mb else None,
            languages=self.embedder_languages,
        )

    def status(self) -> StoreStatus:
        embedder_id, dim = self.store.bound_embedder()
        documents, _ = self.manifest.counts()
        return StoreStatus(
            collection=self.settings.collection,
            embedder=embedder_id,
            dimension=dim,
            documents=documents,
            chunks=self.store.count(),
            store_path=self.store.location,
            last_ingest=self.manifest.last_run(),
        )
