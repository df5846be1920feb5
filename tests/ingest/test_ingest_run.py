"""Sync behaviour of `Ingestor.run` against real Chroma (embedded and server) and real loaders."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rag_memory.errors import EmbedderMismatchError, IngestError
from rag_memory.knowledge_base.embedders import HashingEmbedder
from rag_memory.pipelines.components import Components

ALPHA = "Alpha documents talk about apples and orchards.\n\nApples grow on trees in the orchard."
BETA = "Beta documents describe rivers and boats.\n\nBoats sail down the river to the sea."
GAMMA_ZH = "伽马文档介绍长城。长城是中国古代的军事防御工程。\n\n长城全长两万多公里。"


class CountingEmbedder(HashingEmbedder):
    """The hashing embedder, counting every text it embeds."""

    def __init__(self) -> None:
        super().__init__(64)
        self.embedded: list[str] = []

    def _embed_batch(self, texts):
        self.embedded.extend(texts)
        return super()._embed_batch(texts)


def make_tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "alpha.md").write_text("# Alpha\n\n" + ALPHA, encoding="utf-8")
    (root / "beta.txt").write_text(BETA, encoding="utf-8")
    (root / "sub" / "gamma.txt").write_bytes(GAMMA_ZH.encode("gbk"))
    return root


def parts_for(settings, embedder=None) -> Components:
    return Components(settings, embedder=embedder or CountingEmbedder())


def consistent(parts: Components) -> set[str]:
    """The store holds exactly the chunks the manifest records; returns them."""
    recorded = parts.manifest.all_chunk_ids()
    assert parts.store.ids() == recorded
    assert parts.lexical.ids() == recorded  # the keyword index mirrors the store
    assert parts.manifest.pending() == {}
    return recorded


def test_first_ingest_adds_every_file_and_search_finds_them(store_settings, tmp_path):
    tree = make_tree(tmp_path / "docs")
    parts = parts_for(store_settings)
    report = parts.ingestor().run([tree])
    assert sorted(Path(p).name for p in report.added) == ["alpha.md", "beta.txt", "gamma.txt"]
    assert report.failed == [] and report.removed == [] and report.unchanged == []
    assert report.chunks_added == parts.store.count() > 0
    consistent(parts)
    hits = parts.retriever.retrieve("boats river sea", top_k=1)
    assert Path(hits[0].source).name == "beta.txt"
    zh = parts.retriever.retrieve("长城有多长", top_k=1)
    assert Path(zh[0].source).name == "gamma.txt"
    assert "长城" in zh[0].text
    meta = zh[0].metadata
    assert meta["title"] and meta["embedder"] == "hashing:64" and meta["content_hash"]
    assert {"start", "end", "chunk_index", "file_hash"} <= set(meta)


def test_reingest_of_unchanged_tree_embeds_nothing(store_settings, tmp_path):
    tree = make_tree(tmp_path / "docs")
    embedder = CountingEmbedder()
    parts = parts_for(store_settings, embedder)
    parts.ingestor().run([tree])
    before = consistent(parts)
    embedder.embedded.clear()
    report = parts.ingestor().run([tree])
    assert embedder.embedded == []
    assert len(report.unchanged) == 3
    assert (report.added, report.updated, report.removed, report.chunks_added) == ([], [], [], 0)
    assert consistent(parts) == before


def test_changed_file_replaces_only_its_changed_chunks(store_settings, tmp_path):
    tree = make_tree(tmp_path / "docs")
    embedder = CountingEmbedder()
    parts = parts_for(store_settings, embedder)
    parts.ingestor().run([tree])
    embedder.embedded.clear()
    (tree / "beta.txt").write_text(BETA.replace("Boats sail", "Canoes paddle"), encoding="utf-8")
    report = parts.ingestor().run([tree])
    assert [Path(p).name for p in report.updated] == ["beta.txt"]
    assert len(report.unchanged) == 2
    # only the edited paragraph was embedded again
    assert embedder.embedded and all("Canoes" in t for t in embedder.embedded)
    texts = " ".join(h.text for h in parts.retriever.retrieve("canoes paddle boats", top_k=10))
    assert "Canoes paddle" in texts and "Boats sail" not in texts
    consistent(parts)


def test_chunks_a_changed_file_keeps_get_their_new_place_and_hash_without_re_embedding(store_settings, tmp_path):
    tree = tmp_path / "docs"
    tree.mkdir()
    paragraphs = [f"Paragraph {i} is about topic {i} and nothing else." for i in range(4)]
    zh = "第二段讲长城。长城很长。"
    (tree / "notes.txt").write_text("\n\n".join(paragraphs + [zh]), encoding="utf-8")
    embedder = CountingEmbedder()
    parts = parts_for(store_settings.replace(chunk_tokens=16, chunk_overlap=0), embedder)
    parts.ingestor().run([tree])
    embedder.embedded.clear()
    # A new first paragraph shifts every kept chunk: index, offsets and the file's hash change.
    (tree / "notes.txt").write_text("\n\n".join(["A brand new opening paragraph goes here, long enough to stand alone today.", *paragraphs, zh]),
                                    encoding="utf-8")
    parts.ingestor().run([tree])
    assert embedder.embedded == ["A brand new opening paragraph goes here, long enough to stand alone today."]
    ids = consistent(parts)
    from rag_memory.ingest.run import file_hash

    digest = file_hash(tree / "notes.txt")
    text = (tree / "notes.txt").read_text(encoding="utf-8")
    for name, records in (("chroma", parts.store.get_records(ids=sorted(ids))),
                          ("keyword index", parts.lexical.search("paragraph topic 长城", k=50))):
        metas = sorted((h.metadata for h in records), key=lambda m: m["chunk_index"])
        assert [m["chunk_index"] for m in metas] == list(range(6)), name
        assert {m["file_hash"] for m in metas} == {digest}, name
        for h in records:
            assert text[h.metadata["start"]:h.metadata["end"]] == h.text, name


def test_deleted_file_loses_its_chunks_and_other_roots_are_left_alone(store_settings, tmp_path):
    tree = make_tree(tmp_path / "docs")
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("Kept notes about kites and wind.", encoding="utf-8")
    parts = parts_for(store_settings)
    parts.ingestor().run([tree, other])
    (tree / "alpha.md").unlink()
    report = parts.ingestor().run([tree])  # syncing docs/ only must not touch other/
    assert [Path(p).name for p in report.removed] == ["alpha.md"]
    assert report.chunks_removed > 0
    sources = {Path(s).name for s in parts.manifest.sources()}
    assert sources == {"beta.txt", "gamma.txt", "keep.txt"}
    assert all("apples" not in h.text.lower() for h in parts.retriever.retrieve("apples orchard", top_k=10))
    consistent(parts)


def test_dry_run_reports_the_plan_and_writes_nothing(settings, tmp_path):
    tree = make_tree(tmp_path / "docs")
    parts = parts_for(settings)
    report = parts.ingestor().run([tree], dry_run=True)
    assert len(report.added) == 3 and report.dry_run
    assert not parts.store.exists()
    assert parts.manifest.files() == {}
    parts.ingestor().run([tree])
    (tree / "beta.txt").unlink()
    (tree / "alpha.md").write_text("# Alpha\n\nrewritten", encoding="utf-8")
    (tree / "new.txt").write_text("a new file", encoding="utf-8")
    count = parts.store.count()
    plan = parts.ingestor().run([tree], dry_run=True)
    assert [Path(p).name for p in plan.added] == ["new.txt"]
    assert [Path(p).name for p in plan.updated] == ["alpha.md"]
    assert [Path(p).name for p in plan.removed] == ["beta.txt"]
    assert parts.store.count() == count


def test_bad_files_are_listed_and_everything_else_is_ingested(settings, tmp_path):
    tree = make_tree(tmp_path / "docs")
    (tree / "empty.txt").write_bytes(b"")
    (tree / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (tree / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage")
    parts = parts_for(settings)
    report = parts.ingestor().run([tree])
    failed = {Path(f.path).name: f.reason for f in report.failed}
    assert set(failed) == {"empty.txt", "binary.txt", "broken.pdf"}
    assert all(reason for reason in failed.values())
    assert len(report.added) == 3
    consistent(parts)


def test_a_changed_file_that_can_no_longer_be_read_keeps_its_stored_chunks(settings, tmp_path):
    tree = make_tree(tmp_path / "docs")
    parts = parts_for(settings)
    parts.ingestor().run([tree])
    before = consistent(parts)
    (tree / "beta.txt").write_bytes(b"\x00\x01\x02" * 100)
    report = parts.ingestor().run([tree])
    assert [Path(f.path).name for f in report.failed] == ["beta.txt"]
    assert consistent(parts) == before


def test_hidden_files_filters_and_escaping_links(settings, tmp_path):
    tree = make_tree(tmp_path / "docs")
    (tree / ".secret.txt").write_text("hidden", encoding="utf-8")
    (tree / ".git").mkdir()
    (tree / ".git" / "notes.txt").write_text("hidden", encoding="utf-8")
    (tree / "image.png").write_bytes(b"\x89PNG")
    outside = tmp_path / "outside.txt"
    outside.write_text("outside the root", encoding="utf-8")
    os.symlink(outside, tree / "link-out.txt")
    os.symlink(tree, tree / "sub" / "loop")  # a link back up the tree
    parts = parts_for(settings)
    report = parts.ingestor().run([tree])
    assert sorted(Path(p).name for p in report.added) == ["alpha.md", "beta.txt", "gamma.txt"]
    only_txt = parts_for(settings.replace(collection="filtered")).ingestor().run(
        [tree], include=["*.txt"], exclude=["sub"]
    )
    assert [Path(p).name for p in only_txt.added] == ["beta.txt"]


def test_missing_input_path_is_an_error_naming_it(settings, tmp_path):
    with pytest.raises(IngestError, match="nope"):
        parts_for(settings).ingestor().run([tmp_path / "nope"])


def test_embedder_mismatch_is_refused_until_rebuild(settings, tmp_path):
    tree = make_tree(tmp_path / "docs")
    parts_for(settings).ingestor().run([tree])
    other = Components(settings, embedder=HashingEmbedder(32))
    with pytest.raises(EmbedderMismatchError, match="--rebuild"):
        other.ingestor().run([tree])
    with pytest.raises(EmbedderMismatchError):
        other.retriever.retrieve("apples")
    report = other.ingestor().run([tree], rebuild=True)
    assert len(report.added) == 3
    assert other.store.bound_embedder() == ("hashing:32", 32)
    consistent(other)


class Boom(Exception):
    pass


@pytest.mark.parametrize("crash_at", ["upsert", "delete", "commit"])
def test_a_run_interrupted_anywhere_is_repaired_by_the_next(settings, tmp_path, monkeypatch, crash_at):
    tree = make_tree(tmp_path / "docs")
    parts = parts_for(settings)
    parts.ingestor().run([tree])
    # change one file, add one, so the crashing run has old chunks to delete and new ones to add
    (tree / "beta.txt").write_text(BETA.replace("Boats sail", "Ferries cross"), encoding="utf-8")
    (tree / "delta.txt").write_text("Delta notes about deltas of rivers.", encoding="utf-8")
    target = {"upsert": parts.store, "delete": parts.store, "commit": parts.manifest}[crash_at]
    method = {"upsert": "upsert", "delete": "delete", "commit": "commit_files"}[crash_at]
    real = getattr(target, method)

    def crash(*args, **kwargs):
        if crash_at == "upsert":
            real(*args, **kwargs)  # the write lands, then the process "dies"
        raise Boom()

    monkeypatch.setattr(target, method, crash)
    with pytest.raises(Boom):
        parts.ingestor().run([tree])
    monkeypatch.setattr(target, method, real)
    # the file that was being added disappears before the next run: its chunks must not linger
    (tree / "delta.txt").unlink()
    report = parts.ingestor().run([tree])
    ids = consistent(parts)
    texts = [h.text for h in parts.retriever.retrieve("ferries boats deltas", top_k=len(ids))]
    assert any("Ferries cross" in t for t in texts)
    assert not any("Boats sail" in t or "Delta notes" in t for t in texts)
    assert len(texts) == len(set(texts)) == len(ids)
    assert [Path(p).name for p in report.updated + report.added] in (["beta.txt"], [])


def test_kill_9_mid_run_then_rerun_leaves_no_duplicates_orphans_or_gaps(settings, tmp_path):
    tree = tmp_path / "many"
    tree.mkdir()
    for i in range(40):
        (tree / f"f{i:02d}.txt").write_text(f"File {i} talks about topic {i}.\n\n" * 3, encoding="utf-8")
    script = textwrap.dedent(
        f"""
        import os, signal
        from rag_memory.config import Settings
        from rag_memory.pipelines.components import Components
        parts = Components(Settings.load({{"embedder": "hashing:64"}}))
        ing = parts.ingestor()
        ing.batch_chunks = 10
        real = parts.store.upsert
        calls = []
        def upsert(*a, **k):
            real(*a, **k)
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        parts.store.upsert = upsert
        ing.run([{str(tree)!r}])
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env=os.environ.copy(), capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    for i in range(0, 40, 7):  # some files vanish while "down"
        (tree / f"f{i:02d}.txt").unlink()
    parts = parts_for(settings)
    report = parts.ingestor().run([tree])
    ids = consistent(parts)
    names = {Path(p).name for p in parts.manifest.sources()}
    assert names == {f"f{i:02d}.txt" for i in range(40) if i % 7}
    assert len(ids) == len(names)  # one chunk per file, no duplicates
    assert report.failed == []


def test_a_second_concurrent_ingest_is_refused_when_it_may_not_wait(settings, tmp_path):
    from rag_memory.locking import LockTimeout
    from tests.helpers.locks import lock_held_elsewhere

    tree = make_tree(tmp_path / "docs")
    with lock_held_elsewhere(settings.home, f"ingest-{settings.collection}", "ingest into collection knowledge") as pid:
        with pytest.raises(LockTimeout, match=rf"pid {pid}, ingest into collection knowledge.*lock_timeout"):
            parts_for(settings.replace(lock_timeout=0)).ingestor().run([tree])
    assert parts_for(settings).manifest.sources() == []  # nothing was written while refused


class LoadCountingEmbedder(CountingEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.warm_ups = 0

    def warm_up(self) -> None:
        self.warm_ups += 1


def test_an_unchanged_tree_is_synced_without_loading_the_model(settings, tmp_path):
    tree = make_tree(tmp_path / "docs")
    parts_for(settings).ingestor().run([tree])
    lazy = LoadCountingEmbedder()
    report = parts_for(settings, lazy).ingestor().run([tree])
    assert len(report.unchanged) == 3 and lazy.warm_ups == 0 and lazy.embedded == []


def test_reading_a_fresh_home_creates_nothing(settings, tmp_path):
    tree = make_tree(tmp_path / "docs")
    parts = parts_for(settings)
    parts.ingestor().run([tree], dry_run=True)
    assert parts.status().chunks == 0 and parts.retriever.retrieve("apples") == []
    assert not settings.home.exists() or not any(settings.home.iterdir())


def test_a_mismatch_with_equal_counts_is_still_repaired(settings, tmp_path):
    tree = make_tree(tmp_path / "docs")
    parts = parts_for(settings)
    parts.ingestor().run([tree])
    ids = sorted(parts.manifest.all_chunk_ids())
    # one chunk vanishes and one stray chunk appears: the count is unchanged
    [victim] = parts.store.get_records(ids=[ids[0]])
    parts.store.delete([ids[0]])
    parts.store.upsert_records(["stray"], ["stray text"], [[1.0] + [0.0] * 63],
                               [{"source": "/nowhere", "ragmem_manifest": parts.manifest.instance_id}],
                               embedder_id="hashing:64")
    report = parts.ingestor().run([tree])
    assert report.repaired >= 2  # the stray, the gap (and the keyword index following the store)
    assert Path(victim.source).name in {Path(p).name for p in report.added}
    consistent(parts)


def test_two_homes_sharing_a_server_collection_keep_each_others_chunks(chroma_url, tmp_path):
    from rag_memory.config import Settings

    shared = {"chroma_url": chroma_url, "collection": "shared-two-homes", "embedder": "hashing:64"}
    a = parts_for(Settings.load({**shared, "home": tmp_path / "home-a"}))
    b = parts_for(Settings.load({**shared, "home": tmp_path / "home-b"}))
    a.ingestor().run([make_tree(tmp_path / "a-docs")])
    b_tree = tmp_path / "b-docs"
    b_tree.mkdir()
    (b_tree / "kites.txt").write_text("Kites fly in the wind over the hills.", encoding="utf-8")
    b.ingestor().run([b_tree])
    total = a.store.count()
    a.ingestor().run([tmp_path / "a-docs"])
    b.ingestor().run([b_tree])
    assert a.store.count() == total
    assert {Path(h.source).name for h in b.retriever.retrieve("kites wind", top_k=10)} >= {"kites.txt", "beta.txt"}


def test_a_link_cannot_bring_in_an_excluded_folder_and_real_paths_win(settings, tmp_path):
    root = tmp_path / "t"
    (root / "docs").mkdir(parents=True)
    (root / "build").mkdir()
    (root / "docs" / "x.md").write_text("# X\n\nreal file", encoding="utf-8")
    os.symlink(root / "docs", root / "build" / "aaa-link")  # sorts before docs/
    excluded = parts_for(settings).ingestor().run([root], exclude=["docs"], dry_run=True)
    assert excluded.added == []
    kept = parts_for(settings).ingestor().run([root], dry_run=True)
    assert kept.added == [str(root / "docs" / "x.md")]


def test_a_failed_update_says_the_old_version_is_kept(settings, tmp_path):
    tree = make_tree(tmp_path / "docs")
    parts = parts_for(settings)
    parts.ingestor().run([tree])
    (tree / "beta.txt").write_bytes(b"")
    report = parts.ingestor().run([tree])
    assert "previously ingested version" in report.failed[0].reason
