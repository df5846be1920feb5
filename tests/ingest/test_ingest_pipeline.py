"""The pipelined ingest: big files are written batch by batch, and a resumed run embeds only
what is missing; loading overlaps embedding."""

from __future__ import annotations

import threading

import pytest

from rag_memory.ingest.run import IngestProgress
from tests.ingest.test_ingest_run import CountingEmbedder, consistent, parts_for

EN = "Paragraph {i} explains how the river carries boats to the sea near town {i}."
ZH = "第{i}段介绍长城的历史，长城是中国古代的军事防御工程。"


def big_file(path, n=60):
    path.write_text("\n\n".join((EN if i % 2 else ZH).format(i=i) for i in range(n)), encoding="utf-8")
    return path


class Boom(Exception):
    pass


def test_an_interrupted_big_file_keeps_its_batches_and_the_next_run_embeds_only_the_rest(settings, tmp_path):
    tree = tmp_path / "docs"
    tree.mkdir()
    big_file(tree / "big.txt")
    parts = parts_for(settings)
    ingestor = parts.ingestor()
    ingestor.batch_chunks = 10
    ingestor.chunk_tokens = 16  # one paragraph per chunk
    ingestor.chunk_overlap = 0
    real = parts.store.upsert
    calls = []

    def upsert(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            raise Boom()  # the process "dies" after its third batch landed

    parts.store.upsert = upsert
    with pytest.raises(Boom):
        ingestor.run([tree])
    parts.store.upsert = real
    written = parts.store.ids()
    assert len(written) == 30 and parts.manifest.files() == {}
    # Written batches are searchable before the file is finished, in English and Chinese.
    texts = [h.text for h in parts.retriever.retrieve("长城的历史", top_k=5)]
    assert any("长城" in t for t in texts)

    again = CountingEmbedder()
    resumed = parts_for(settings, again).ingestor()
    resumed.chunk_tokens, resumed.chunk_overlap = 16, 0
    report = resumed.run([tree])
    assert report.chunks_resumed == 30 and report.chunks_added == 30
    assert len(again.embedded) == 30  # only what was missing
    ids = consistent(parts)
    assert len(ids) == 60 and written <= ids


def test_leftovers_a_resumed_run_does_not_claim_are_deleted(settings, tmp_path):
    tree = tmp_path / "docs"
    tree.mkdir()
    big = big_file(tree / "big.txt")
    parts = parts_for(settings)
    ingestor = parts.ingestor()
    ingestor.batch_chunks, ingestor.chunk_tokens, ingestor.chunk_overlap = 10, 16, 0
    real = parts.store.upsert

    def upsert(*args, **kwargs):
        real(*args, **kwargs)
        raise Boom()

    parts.store.upsert = upsert
    with pytest.raises(Boom):
        ingestor.run([tree])
    parts.store.upsert = real
    assert len(parts.store.ids()) == 10
    big.write_text("Only this sentence is left. 只剩这一句。", encoding="utf-8")
    report = parts.ingestor().run([tree])
    assert report.chunks_resumed == 0 and report.repaired >= 10
    ids = consistent(parts)
    assert len(ids) == 1


class GatedEmbedder(CountingEmbedder):
    """Holds its first batch until the loader has read the last file: a serial ingest would hang."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate
        self.batches = 0

    def _embed_batch(self, texts):
        self.batches += 1
        if self.batches == 1:
            assert self.gate.wait(timeout=20), "the loader did not run while the first batch was embedded"
        return super()._embed_batch(texts)


def test_loading_overlaps_embedding(settings, tmp_path):
    tree = tmp_path / "docs"
    tree.mkdir()
    for i in range(5):
        big_file(tree / f"f{i}.txt", n=12)
    gate = threading.Event()
    from rag_memory.ingest.loaders import load_file

    def loader(path):
        doc = load_file(path)
        if path.name == "f4.txt":
            gate.set()
        return doc

    embedder = GatedEmbedder(gate)
    parts = parts_for(settings, embedder)
    ingestor = parts.ingestor()
    ingestor.loader = loader
    ingestor.batch_chunks, ingestor.chunk_tokens, ingestor.chunk_overlap = 4, 16, 0
    report = ingestor.run([tree])
    assert len(report.added) == 5 and report.chunks_added == 60
    consistent(parts)


def test_progress_learns_the_chunk_total_as_each_file_is_chunked(settings, tmp_path):
    tree = tmp_path / "docs"
    tree.mkdir()
    big_file(tree / "a.txt", n=20)
    big_file(tree / "b.txt", n=10)

    class Recording(IngestProgress):
        def __init__(self):
            self.planned_chunks, self.embedded = [], 0

        def chunks_planned(self, n):
            self.planned_chunks.append(n)

        def chunks_embedded(self, n):
            self.embedded += n

    progress = Recording()
    ingestor = parts_for(settings).ingestor()
    ingestor.chunk_tokens, ingestor.chunk_overlap = 16, 0
    ingestor.run([tree], progress=progress)
    assert sorted(progress.planned_chunks) == [10, 20] and progress.embedded == 30
