"""The home's inter-process write lock, and embedded Chroma written by several processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from rag_memory.config import Settings
from rag_memory.knowledge_base.embedders import HashingEmbedder
from rag_memory.locking import HomeLock, LockTimeout
from rag_memory.pipelines.components import Components
from tests.helpers.locks import lock_held_elsewhere


def test_a_writer_waits_for_another_process_and_says_whom_it_waits_for(tmp_path):
    home = tmp_path / "home"
    said: list[str] = []
    with lock_held_elsewhere(home, "write", "ingest into collection knowledge", release_after=1.5) as pid:
        started = time.monotonic()
        with HomeLock(home, notice_after=0.3, on_wait=said.append).hold("remember a turn"):
            waited = time.monotonic() - started
    assert waited >= 0.5
    assert said == [f"waiting for another ragmem process (pid {pid}, ingest into collection knowledge) writing {home}"]


def test_a_writer_that_may_not_wait_long_gives_up_naming_the_holder(tmp_path):
    home = tmp_path / "home"
    with lock_held_elsewhere(home, "write", "ingest") as pid:
        with pytest.raises(LockTimeout, match=rf"pid {pid}, ingest\) is writing {home}; gave up after"):
            with HomeLock(home, timeout=0.2).hold("remember a turn"):
                pass
    with HomeLock(home, timeout=0).hold("remember a turn"):  # free again once the holder exits
        pass


def test_the_lock_is_reentrant_in_a_thread_and_other_threads_queue(tmp_path):
    lock = HomeLock(tmp_path / "home")
    order: list[str] = []
    with lock.hold("outer"):
        with lock.hold("inner"):
            assert lock.held
        other = threading.Thread(target=lambda: lock.hold("other").__enter__() or order.append("other"))
        other.start()
        time.sleep(0.2)
        order.append("outer done")
    other.join(5)
    assert order == ["outer done", "other"]


def test_a_memory_write_waits_for_the_home_write_lock(tmp_path):
    settings = Settings.load({"embedder": "hashing:64", "lock_timeout": 0.2})
    parts = Components(settings, embedder=HashingEmbedder(64))
    with lock_held_elsewhere(settings.home, "write", "ingest") as pid:
        with pytest.raises(LockTimeout, match=f"pid {pid}, ingest"):
            parts.long_term.remember("alice", "s1", "My cat is called Tom.", kind="fact")
    parts.long_term.remember("alice", "s1", "我的猫叫汤姆。", kind="fact")
    assert [m.text for m in parts.long_term.list("alice")] == ["我的猫叫汤姆。"]


WRITER = textwrap.dedent(
    """
    import sys
    from rag_memory.config import Settings
    from rag_memory.knowledge_base.embedders import HashingEmbedder
    from rag_memory.pipelines.components import Components
    parts = Components(Settings.load({"embedder": "hashing:64"}), embedder=HashingEmbedder(64))
    who = sys.argv[1]
    for i in range(int(sys.argv[2])):
        parts.long_term.remember(who, "s", f"{who} note {i} 记事 {i}", kind="fact")
    """
)


@pytest.mark.slow
def test_processes_writing_one_collection_lose_no_vectors_and_a_reader_sees_them(ragmem_home):
    # Unlocked, or locked without re-opening a stale view, embedded Chroma loses about half of
    # these vectors from its index (count() says 90, query() finds 45).
    parts = Components(Settings.load({"embedder": "hashing:64"}), embedder=HashingEmbedder(64))
    parts.long_term.remember("reader", "s", "opened before the writers started", kind="fact")
    assert len(parts.long_term.store.query(HashingEmbedder(64).embed_query("x"), k=500)) == 1
    env = os.environ.copy()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, who, "30"], env=env, stderr=subprocess.PIPE)
        for who in ("ann", "bob", "cai")
    ]
    for proc in writers:
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    store = parts.long_term.store  # this process's view was loaded before the writers ran
    hits = store.query(HashingEmbedder(64).embed_query("note 记事"), k=500)
    assert store.count() == 91
    assert len(hits) == 91 == len({h.chunk_id for h in hits})
    for who in ("ann", "bob", "cai"):
        assert len(parts.long_term.list(who)) == 30
