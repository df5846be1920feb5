"""Properties (hypothesis): chunks cover a document in order within the token limit, and the
manifest's diff is right for any sequence of adds, changes and deletes. (The fusion budget's
property is tests/pipelines/test_fusion.py::test_the_rendered_prompt_never_exceeds_the_budget;
escaping's round trip is in tests/pipelines/test_prompt_boundary.py.)"""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_memory.ingest.chunking import ChunkSettings, TokenChunker
from rag_memory.knowledge_base.embedders import HashingEmbedder
from rag_memory.schema import LoadedDocument, Section
from tests.reliability.helpers import assert_consistent, components, snapshot

COUNT = HashingEmbedder(64).count_tokens
PIECES = list("abc xyz。！？，\n中文字長") + ["word ", "。\n\n", ". ", "\n\n", "# Title\n", "  ", "naïve "]


@settings(max_examples=80, deadline=None)
@given(
    sections=st.lists(st.lists(st.sampled_from(PIECES), max_size=120).map("".join), min_size=1, max_size=3),
    size=st.integers(min_value=16, max_value=48),
    overlap=st.integers(min_value=0, max_value=6),
)
def test_chunks_cover_every_character_in_order_within_the_limit(sections, size, overlap):
    doc = LoadedDocument("/p.txt", "p", tuple(Section(t, page=i + 1) for i, t in enumerate(sections)), "h")
    chunker = TokenChunker(COUNT, ChunkSettings(max_tokens=size, overlap=overlap, embedder_id="x"))
    chunks = chunker.chunk(doc)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert len({c.id for c in chunks}) == len(chunks)
    for page, text in enumerate(sections, start=1):
        mine = [c for c in chunks if c.page == page]
        for c in mine:
            assert text[c.start : c.end] == c.text  # offsets point at the chunk's own text
            assert c.n_tokens <= size and COUNT(c.text) <= size
        # in order: each chunk starts after the previous one started and ends no earlier
        assert all(a.start < b.start and a.end <= b.end for a, b in itertools.pairwise(mine))
        covered = set()
        for c in mine:
            covered.update(range(c.start, c.end))
        assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


NAMES = [f"f{i}.txt" for i in range(5)]
CONTENTS = ["alpha apples", "beta boats 船", "gamma 长城", "delta rivers", "alpha apples, again"]
ROUND = st.dictionaries(st.sampled_from(NAMES), st.one_of(st.none(), st.sampled_from(CONTENTS)), max_size=5)
_runs = itertools.count()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(ROUND, min_size=1, max_size=4))
def test_the_manifest_diff_is_right_for_any_sequence_of_adds_changes_and_deletes(tmp_path, rounds):
    n = next(_runs)
    root = tmp_path / f"tree{n}"
    root.mkdir()
    parts = components(tmp_path / "home", collection=f"prop{n:04d}")
    ingested: dict[str, str] = {}
    for changes in rounds:
        for name, content in changes.items():
            if content is None:
                (root / name).unlink(missing_ok=True)
            else:
                (root / name).write_text(content, encoding="utf-8")
        now = {p.name: p.read_text(encoding="utf-8") for p in root.iterdir()}
        report = parts.ingestor().run([root])
        names = lambda paths: sorted(Path(p).name for p in paths)  # noqa: E731
        assert names(report.added) == sorted(set(now) - set(ingested))
        assert names(report.removed) == sorted(set(ingested) - set(now))
        assert names(report.updated) == sorted(k for k in set(now) & set(ingested) if now[k] != ingested[k])
        assert names(report.unchanged) == sorted(k for k in set(now) & set(ingested) if now[k] == ingested[k])
        ingested = now
        snap = snapshot(parts)
        assert_consistent(snap)
        assert sorted(Path(p).name for p in snap["files"]) == sorted(now)
