"""kill -9 at named points of a real `ragmem ingest` (and of an ask), then finish the job: the
store equals a clean ingest, and a further run adds nothing. See docs/reliability.md."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.reliability.helpers import assert_consistent, cli_env, components, ragmem, snapshot

pytestmark = pytest.mark.slow

EN = "File {i} is about the river number {i}. Boats carry grain down river {i} every spring."
ZH = "第{i}号文件讲长城。长城修建于古代。第{i}段城墙很长很高。"


def write_tree(root: Path, version: int) -> Path:
    """24 files of three paragraphs (3 chunks each), 8 of them Chinese; version 1 edits 4 files
    (a new first paragraph shifts their kept chunks), deletes 3 and adds 3."""
    if root.exists():
        shutil.rmtree(root)
    (root / "zh").mkdir(parents=True)
    for i in range(24):
        text = (ZH if i % 3 == 0 else EN).format(i=i)
        paragraphs = [text, text.replace("river", "lake").replace("长城", "黄河"),
                      text.upper().replace("BOATS", "SHIPS").replace("长城", "运河")]
        if version == 1 and i in (1, 4, 7, 9):
            paragraphs.insert(0, f"An edit put this new opening paragraph into file {i} today.")
        if version == 1 and i in (2, 5, 6):
            continue
        folder = root / "zh" if i % 3 == 0 else root
        (folder / f"f{i:02d}.{'md' if i % 2 else 'txt'}").write_text("\n\n".join(paragraphs), encoding="utf-8")
    if version == 1:
        for j in range(3):
            (root / f"new{j}.txt").write_text(f"A new file {j} arrives. It talks about ferries {j}.", encoding="utf-8")
    return root


FIRST = [f"load:{n}" for n in (1, 6, 12, 18, 24)] + [f"embed:{n}" for n in (1, 3, 5, 9)] + [
    "pending:1", "upsert:1", "delete:1", "metadata:1", "keyword-index:1", "commit:1",
]
UPDATE = ["load:1", "load:4", "load:7", "embed:1", "pending:1", "upsert:1", "delete:1", "metadata:1",
          "keyword-index:1", "commit:1", "remove:1"]


def test_ingest_killed_at_any_of_28_points_is_finished_by_the_next_run_into_a_clean_store(tmp_path):
    first_tree = write_tree(tmp_path / "first", 0)
    tree = write_tree(tmp_path / "tree", 0)
    base = tmp_path / "base"
    assert ragmem(base, "ingest", str(tree)).returncode == 0
    write_tree(tree, 1)

    ref_first = components(tmp_path / "ref-first")
    ref_first.ingestor().run([first_tree])
    ref_update = components(tmp_path / "ref-update")
    ref_update.ingestor().run([tree])
    expected = {"first": snapshot(ref_first), "update": snapshot(ref_update)}
    assert len(expected["update"]["chroma"]) > 60 and len(expected["first"]["chroma"]) == 72

    def kill(scenario: str, point: str) -> tuple[str, str, Path, list[subprocess.CompletedProcess]]:
        home = tmp_path / "homes" / f"{scenario}-{point.replace(':', '-')}"
        target = first_tree if scenario == "first" else tree
        if scenario != "first":
            shutil.copytree(base, home)
        runs = []
        if scenario == "repair":  # killed once mid-write, then again while repairing that
            runs.append(ragmem(home, "ingest", str(target), RAGMEM_KILL_AT="upsert:1"))
        runs.append(ragmem(home, "ingest", str(target), RAGMEM_KILL_AT=point))
        return scenario, point, home, runs

    plan = [("first", p) for p in FIRST] + [("update", p) for p in UPDATE] + [("repair", "repair:1")]
    with ThreadPoolExecutor(2) as pool:
        killed = list(pool.map(lambda job: kill(*job), plan))

    assert len(killed) >= 20
    for scenario, point, home, runs in killed:
        for proc in runs:
            assert proc.returncode == -9, f"{scenario} {point} was not reached: {proc.returncode} {proc.stderr[-800:]}"
        parts = components(home)
        target = first_tree if scenario == "first" else tree
        finished = parts.ingestor().run([target])
        assert finished.failed == [], (scenario, point)
        snap = snapshot(parts)
        assert_consistent(snap)
        want = expected["first" if scenario == "first" else "update"]
        assert snap["chroma"] == want["chroma"], f"{scenario} {point}: the store differs from a clean ingest"
        assert snap["files"] == want["files"], f"{scenario} {point}: the manifest differs from a clean ingest"
        again = parts.ingestor().run([target])
        assert (again.added, again.updated, again.removed, again.chunks_added, again.repaired) == ([], [], [], 0, 0)
        hits = parts.retriever.retrieve("长城 城墙", top_k=3)
        assert hits and "长城" in hits[0].text


ASK = textwrap.dedent(
    """
    import sys
    from rag_memory.config import Settings
    from rag_memory.generation.select import Selection
    from rag_memory.knowledge_base.embedders import HashingEmbedder
    from rag_memory.pipelines.components import Components
    from rag_memory.pipelines.rag import RagPipeline
    from tests.helpers.fakes import RecordingGenerator
    parts = Components(Settings.load({"relevance_gate": 0.05, "memory_min_score": 0.0}), embedder=HashingEmbedder(64))
    parts.generation = Selection(RecordingGenerator("Boats carry grain down the river [1]."))
    RagPipeline(components=parts).ask(sys.argv[1], session_id="s1", user_id="alice")
    """
)


def test_ask_killed_mid_turn_loses_at_most_that_turn(tmp_path):
    tree = write_tree(tmp_path / "tree", 0)
    results = {}
    for point in ("generate:2", "history:1", "memory:1"):
        home = tmp_path / point.replace(":", "-")
        assert ragmem(home, "ingest", str(tree)).returncode == 0
        env = cli_env(home)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + ":" + env.get("PYTHONPATH", "")
        for question in ("What do boats carry on river 1?", "长城修建于什么时候？"):
            assert subprocess.run([sys.executable, "-c", ASK, question], env=env, timeout=300).returncode == 0
        killed = subprocess.run([sys.executable, "-c", ASK, "Which river is number 4?"],
                                env={**env, "RAGMEM_KILL_AT": point}, timeout=300)
        results[point] = killed.returncode
        parts = components(home)
        turns = parts.history.turns("alice", "s1")
        texts = [(t.role, t.content) for t in turns]
        # the two finished turns are intact; of the one in flight, nothing or part is kept
        assert texts[:4] == [
            ("user", "What do boats carry on river 1?"), ("assistant", "Boats carry grain down the river [1]."),
            ("user", "长城修建于什么时候？"), ("assistant", "Boats carry grain down the river [1]."),
        ], point
        assert len(texts) <= 6 and all(role in ("user", "assistant") for role, _ in texts[4:])
        memories = parts.long_term.list("alice")
        assert any("长城修建于什么时候" in m.text for m in memories), point
        # and the conversation goes on
        assert subprocess.run([sys.executable, "-c", ASK, "And river 5?"], env=env, timeout=300).returncode == 0
        assert components(home).history.turns("alice", "s1")[-1].content == "Boats carry grain down the river [1]."
    assert set(results.values()) == {-9}, results
