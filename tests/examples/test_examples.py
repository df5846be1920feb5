"""The examples run as a user runs them: a subprocess, a temp home, the tiny local model, offline."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag_memory.config import Settings
from rag_memory.generation.select import Selection
from rag_memory.memory.history import ChatHistory
from rag_memory.pipelines.components import Components
from rag_memory.pipelines.rag import RagPipeline
from tests.helpers.fakes import RecordingGenerator

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
DOCS = {
    "sync.md": "# Sync\n\nWhen a file is deleted, re-ingest removes its chunks from the knowledge base.\n\n"
    "Changed files are re-chunked and their changed chunks are embedded again.",
    "boats.txt": "Boats sail down the river to the sea. Ferries cross the bay every hour.",
    "greatwall.txt": "长城是中国古代的军事防御工程。长城全长两万多公里。",
}


@pytest.fixture
def docs_dir(tmp_path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def run_example(name: str, *args: str, home: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "RAGMEM_HOME": str(home),
        "RAGMEM_EMBEDDER": "hashing",
        "RAGMEM_DEVICE": "cpu",
        "RAGMEM_RELEVANCE_GATE": "0.1",  # the hashing embedder's similarities run low
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          env=env, cwd=home.parent, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_python_api_example_ingests_asks_and_streams_with_the_tiny_model(tiny_chat_model, docs_dir, ragmem_home):
    proc = run_example("python_api.py", str(docs_dir), "--model", str(tiny_chat_model), "--max-new-tokens", "8",
                       "--question", "What happens to deleted files on re-ingest?", "--follow-up", "长城有多长？",
                       home=ragmem_home)
    out = proc.stdout

    assert f"ingested {docs_dir}: 3 added, 0 updated, 0 unchanged, 0 removed" in out
    assert "Q: What happens to deleted files on re-ingest?" in out and "Q: 长城有多长？" in out
    assert f"[1] {docs_dir / 'sync.md'}" in out
    assert f"(transformers: {tiny_chat_model}," in out
    turns = ChatHistory(ragmem_home / "memory.sqlite3").turns("demo", "python-api")
    assert [t.content for t in turns if t.role == "user"] == ["What happens to deleted files on re-ingest?", "长城有多长？"]
    assert all(t.content for t in turns)


def test_langchain_app_example_chats_with_the_tiny_model_and_ragmem_history(tiny_chat_model, docs_dir, ragmem_home):
    Components(Settings.load({"embedder": "hashing"})).ingestor().run([docs_dir])

    proc = run_example("langchain_app.py", "What happens to deleted files?", "长城有多长？", "--model",
                       str(tiny_chat_model), "--max-new-tokens", "8", "--session", "lc", home=ragmem_home)

    assert "Q: What happens to deleted files?\nA: " in proc.stdout and "Q: 长城有多长？\nA: " in proc.stdout
    assert "(4 messages in session 'lc')" in proc.stdout
    turns = ChatHistory(ragmem_home / "memory.sqlite3").turns("demo", "lc")
    assert [t.role for t in turns] == ["user", "assistant"] * 2
    assert turns[2].content == "长城有多长？" and turns[3].content


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_langchain_app_chain_puts_retrieved_passages_and_history_in_its_prompt(settings, docs_dir):
    app = _load("langchain_app")
    parts = Components(settings.replace(embedder="hashing:1024"))
    parts.ingestor().run([docs_dir])
    gen = RecordingGenerator("Noted [1].")
    parts.generation = Selection(gen)
    chat = app.build_chat(RagPipeline(components=parts), "ada")
    config = {"configurable": {"session_id": "s"}}

    assert chat.invoke({"question": "What happens to deleted files on re-ingest?"}, config=config) == "Noted [1]."
    pieces = list(chat.stream({"question": "长城有多长？"}, config=config))

    assert len(pieces) > 1 and "".join(pieces) == "Noted [1]."
    system, *history, question = gen.calls[-1]
    assert "[1] (" in system.content and "长城全长两万多公里" in system.content.split("[2]")[0]
    assert [m.content for m in history] == ["What happens to deleted files on re-ingest?", "Noted [1]."]
    assert question.content == "长城有多长？"
    assert len(parts.history.turns("ada", "s")) == 4


# -- the snippets of docs/python-and-langchain.md, run exactly as written --------------------
DOC = REPO / "docs" / "python-and-langchain.md"
FIVE_LINES = "Add ragmem to a LangChain app in five lines"


def python_blocks(text: str) -> list[tuple[str, str]]:
    """(section heading, code) of every ```python block, in order."""
    blocks, heading, code = [], "", None
    for line in text.splitlines():
        if code is None and line.startswith("## "):
            heading = line[3:].strip()
        elif code is None and line.strip() == "```python":
            code = []
        elif code is not None and line.strip() == "```":
            blocks.append((heading, "\n".join(code) + "\n"))
            code = None
        elif code is not None:
            code.append(line)
    return blocks


BLOCKS = python_blocks(DOC.read_text(encoding="utf-8"))


def test_the_doc_shows_a_retriever_and_a_runnable_in_five_lines_or_fewer():
    short = [code for heading, code in BLOCKS if heading == FIVE_LINES]
    assert len(short) == 2
    assert "as_retriever(" in short[0] and "as_runnable(" in short[1]
    assert all(len(code.splitlines()) <= 5 for code in short)


@pytest.fixture
def doc_home(tiny_chat_model, ragmem_home, monkeypatch) -> Path:
    """What the page assumes: `ragmem ingest docs/` done, here with the hashing embedder and the tiny model."""
    for key, value in {"RAGMEM_EMBEDDER": "hashing", "RAGMEM_GENERATOR_MODEL": str(tiny_chat_model),
                       "RAGMEM_MAX_NEW_TOKENS": "8", "RAGMEM_RELEVANCE_GATE": "0.1", "RAGMEM_DEVICE": "cpu"}.items():
        monkeypatch.setenv(key, value)
    docs = Path.cwd() / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    Components(Settings.load()).ingestor().run([docs])
    return docs


@pytest.mark.parametrize(("heading", "code"), BLOCKS, ids=[f"{i}-{h.split()[0]}" for i, (h, _) in enumerate(BLOCKS)])
def test_every_python_snippet_of_the_doc_runs(heading, code, doc_home, capsys):
    exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_snippet__"})

    out = capsys.readouterr().out
    assert out.strip()
    if "as_retriever(top_k=3)" in code and heading == FIVE_LINES:
        assert str(doc_home / "sync.md") in out.splitlines()[0]
