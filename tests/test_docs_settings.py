"""Every setting the user documentation names exists in ``Settings``."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from rag_memory.config import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs"
FIELDS = {f.name for f in dataclasses.fields(Settings)} - {"sources"}
# RAGMEM_* variables that are not settings: TRUST_PROJECT is an argument of Settings.load
# (like --trust-project), read from the environment but never stored as a setting; DATA_DIR
# is where `ragmem eval` finds its data sets; KILL_AT is the crash tests' kill switch.
NOT_SETTINGS: set[str] = {"TRUST_PROJECT", "DATA_DIR", "KILL_AT"}


def named_settings(docs: Path = DOCS) -> dict[str, set[str]]:
    """setting name -> the docs pages that name it (in a settings table, a ragmem.toml block
    or a RAGMEM_* variable)."""
    found: dict[str, set[str]] = {}

    def add(name: str, page: str) -> None:
        found.setdefault(name, set()).add(page)

    for page in sorted(docs.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        for var in re.findall(r"\bRAGMEM_([A-Z][A-Z0-9_]*)\b", text):
            if var not in NOT_SETTINGS:
                add(var.lower(), page.name)
        for block in re.findall(r"```toml\n(.*?)```", text, flags=re.S):
            for line in block.splitlines():
                m = re.match(r"\s*#?\s*([a-z_][a-z0-9_]*)\s*=", line)
                if m and not line.lstrip().startswith("#"):
                    add(m.group(1), page.name)
        header = None
        for line in text.splitlines():
            if line.startswith("|") and header is None:
                header = line.lower()
                continue
            if not line.startswith("|"):
                header = None
                continue
            if header and re.match(r"\|\s*setting\s*\|", header):  # a column of setting names
                m = re.match(r"\|\s*`([a-z_][a-z0-9_]*)`", line)
                if m:
                    add(m.group(1), page.name)
    return found


def test_every_setting_named_in_the_docs_exists():
    found = named_settings()
    assert len(found) >= 10, "the scan found too few settings: it no longer reads the docs' format"
    missing = {name: sorted(pages) for name, pages in found.items() if name not in FIELDS}
    assert not missing, f"docs name settings that do not exist: {missing}"


def test_the_scan_catches_a_made_up_setting(tmp_path):
    (tmp_path / "page.md").write_text(
        "| setting | default |\n|---|---|\n| `hybrid_dense_weight` | 0.5 |\n\n"
        "```toml\nlexical_gate = 0.2\n```\nSet RAGMEM_TOP_K.\n",
        encoding="utf-8",
    )
    found = named_settings(tmp_path)
    assert set(found) == {"hybrid_dense_weight", "lexical_gate", "top_k"}
    assert "hybrid_dense_weight" not in FIELDS and "lexical_gate" not in FIELDS
