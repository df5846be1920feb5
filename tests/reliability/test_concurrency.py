"""Several ragmem processes on one home: search and ask while an ingest writes, two ingests at
once, and a writer that has to wait says whom it waits for. See docs/reliability.md."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers.locks import lock_held_elsewhere
from tests.reliability.helpers import assert_consistent, cli_env, components, ragmem, snapshot
from tests.reliability.test_crash_safety import ASK, write_tree

pytestmark = pytest.mark.slow


def _texts(tree: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(tree.rglob("*.*")))


def test_search_and_ask_while_ingest_writes_see_a_consistent_store(tmp_path):
    old = write_tree(tmp_path / "tree", 0)
    old_text = _texts(old)
    home = tmp_path / "home"
    assert ragmem(home, "ingest", str(old)).returncode == 0
    tree = write_tree(tmp_path / "tree", 1)
    for i in range(40):  # enough work that readers overlap the writer
        (tree / f"more{i:02d}.txt").write_text(f"More notes {i} about canals. 运河第{i}段很长。", encoding="utf-8")
    new_text = _texts(tree)

    env = cli_env(home)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + ":" + env.get("PYTHONPATH", "")
    writer = subprocess.Popen([sys.executable, "-m", "rag_memory.cli", "ingest", str(tree), "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    searches = asks = during = 0
    questions = []
    while writer.poll() is None or searches < 3:
        during += writer.poll() is None
        search = subprocess.run([sys.executable, "-m", "rag_memory.cli", "search", "长城 城墙", "--json"], env=env,
                                capture_output=True, text=True, timeout=300)
        assert search.returncode == 0, search.stderr[-2000:]
        hits = json.loads(search.stdout)["hits"]
        assert hits, "a reader found an empty store while the writer worked"
        for hit in hits:  # every hit is a chunk of the old tree or of the new one, whole
            assert hit["text"] in old_text or hit["text"] in new_text, hit
        assert len({h["chunk_id"] for h in hits}) == len(hits)
        searches += 1
        question = f"长城第{asks}段有多长？"
        ask = subprocess.run([sys.executable, "-c", ASK, question], env=env, capture_output=True, text=True,
                             timeout=300)
        assert ask.returncode == 0, ask.stderr[-2000:]
        questions.append(question)
        asks += 1
    out, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err[-2000:]
    assert during >= 1, "no reader overlapped the writer"
    assert json.loads(out)["failed"] == []

    parts = components(home)
    snap = snapshot(parts)
    assert_consistent(snap)
    clean = components(tmp_path / "clean")
    clean.ingestor().run([tree])
    assert snap["chroma"] == snapshot(clean)["chroma"]
    asked = [t.content for t in parts.history.turns("alice", "s1") if t.role == "user"]
    assert asked == questions  # every ask's turn was stored, none lost to the ingest's writes
    stored = parts.long_term.store.get_records(where={"user_id": "alice"})
    assert all(any(q in m.text for m in stored) for q in questions)
    _record("search_ask_during_ingest", searches=searches, asks=asks, overlapping=during)


def test_two_ingests_at_once_both_finish_and_the_store_is_written_once(tmp_path):
    tree = write_tree(tmp_path / "tree", 0)
    home = tmp_path / "home"
    env = cli_env(home)
    procs = [subprocess.Popen([sys.executable, "-m", "rag_memory.cli", "ingest", str(tree), "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        reports.append(json.loads(out))
    # One ran first; the other waited for it, then found the tree already in step.
    assert sorted(r["added"] for r in reports) == [0, 24]
    assert sorted(r["unchanged"] for r in reports) == [0, 24]
    snap = snapshot(components(home))
    assert_consistent(snap)
    assert len(snap["chroma"]) == 72


def test_an_ingest_that_must_wait_says_whom_it_waits_for_then_runs(tmp_path):
    tree = write_tree(tmp_path / "tree", 0)
    home = tmp_path / "home"
    want = "waitingforanotherragmemprocess"
    with lock_held_elsewhere(home, "ingest-knowledge", "ingest into collection knowledge") as pid:
        proc = subprocess.Popen([sys.executable, "-m", "rag_memory.cli", "ingest", str(tree), "--json"],
                                env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        waiting = threading.Event()

        def read_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if want in "".join("".join(lines).split()):
                    waiting.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        # The lock is released only once the ingest has said it waits (however slow its start-up
        # on a busy machine), and the ingest must not have finished meanwhile.
        assert waiting.wait(timeout=240), "".join(lines)[-2000:]
        assert proc.poll() is None, "the ingest ran while another process held the lock"
    out = proc.stdout.read() if proc.stdout is not None else ""
    proc.wait(timeout=300)
    reader.join(timeout=30)
    err = "".join(lines)
    assert proc.returncode == 0, err[-2000:]
    squeezed = "".join(err.split())  # the log line is wrapped at the terminal's width
    said = f"waiting for another ragmem process (pid {pid}, ingest into collection knowledge) writing {home}"
    assert "".join(said.split()) in squeezed, err
    assert json.loads(out)["added"] == 24


def test_an_ingest_that_may_not_wait_refuses_naming_the_other_process(tmp_path):
    tree = write_tree(tmp_path / "tree", 0)
    home = tmp_path / "home"
    with lock_held_elsewhere(home, "ingest-knowledge", "ingest into collection knowledge") as pid:
        proc = ragmem(home, "ingest", str(tree), RAGMEM_LOCK_TIMEOUT="0")
    assert proc.returncode == 1
    err = " ".join(proc.stderr.split())
    assert err.startswith("Error: another ragmem process") and f"pid {pid}" in err and "lock_timeout" in err
    assert "Traceback" not in proc.stderr


def _record(name: str, **figures) -> None:
    """Figures for docs/reliability.md, printed so `pytest -s` shows them."""
    print(f"[reliability] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
