"""Bad files beside good ones in one real `ragmem ingest`: each bad file gets an error naming it,
every good file is ingested and found (Chinese by a Chinese query), and the exit code says
partial. See docs/reliability.md."""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import pytest

from rag_memory.cli.options import EXIT_SOME_FILES_FAILED
from rag_memory.ingest.loaders import load_file
from tests.helpers.pdf import write_pdf
from tests.reliability.helpers import assert_consistent, components, ragmem, snapshot

pytestmark = pytest.mark.slow


def _docx(path: Path, text: str) -> Path:
    import docx

    document = docx.Document()
    document.add_paragraph(text)
    document.save(path)
    return path


def _declare_huge(path: Path, member: str, size: int) -> None:
    """Rewrite a member's declared unpacked size (local header and central directory): what a
    zip bomb declares, without writing the bytes."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    local = data.find(b"PK\x03\x04")  # the first local header
    while local != -1:
        n = struct.unpack_from("<H", data, local + 26)[0]
        if data[local + 30 : local + 30 + n] == name:
            struct.pack_into("<I", data, local + 22, size)
        local = data.find(b"PK\x03\x04", local + 4)
    central = data.find(b"PK\x01\x02")
    while central != -1:
        n = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46 : central + 46 + n] == name:
            struct.pack_into("<I", data, central + 24, size)
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))


GOOD = {  # file name -> (bytes, a query that must find it)
    "english.txt": (b"Otters build dams of driftwood along the northern river.", "otters driftwood dams"),
    "name with spaces.md": (b"# Spaces\n\nKestrels hover above the motorway verge.", "kestrels hover"),
    "line\nbreak.txt": (b"Narwhals gather under the spring ice.", "narwhals spring ice"),
    "zh-utf8.txt": ("大熊猫喜欢吃竹子，生活在四川的山里。".encode(), "大熊猫吃竹子"),
    "zh-gbk.txt": ("黄山的云海和奇松非常有名，每年吸引很多游客。".encode("gbk"), "黄山云海奇松"),
    "zh-gb18030.txt": ("鸳鸯在湖面上游泳，㐀字不在GBK里。".encode("gb18030"), "鸳鸯湖面游泳"),
    "zh-big5.txt": ("臺灣高鐵連接臺北與高雄，速度很快。".encode("big5"), "臺灣高鐵臺北高雄"),
    "zh-utf16.txt": ("长江三峡的风景十分壮观。\n".encode("utf-16"), "长江三峡风景"),
}


def build(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The tree; returns (good path -> query, bad path -> what its error must say)."""
    root.mkdir()
    good: dict[str, str] = {}
    for name, (data, query) in GOOD.items():
        (root / name).write_bytes(data)
        good[str(root / name)] = query
    write_pdf(root / "good.pdf", ["Glaciers carve fjords over thousands of years."])
    good[str(root / "good.pdf")] = "glaciers carve fjords"
    _docx(root / "good.docx", "Lighthouses warn ships about the rocks. 灯塔提醒船只注意礁石。")
    good[str(root / "good.docx")] = "灯塔提醒船只"

    bad: dict[str, str] = {}
    (root / "empty.txt").write_bytes(b"")
    bad["empty.txt"] = "empty file"
    (root / "random.txt").write_bytes(os.urandom(4096))
    bad["random.txt"] = "binary or undecodable"
    whole = write_pdf(root / "cut.pdf", ["Some text.", "More text."]).read_bytes()
    (root / "cut.pdf").write_bytes(whole[: len(whole) // 2])
    bad["cut.pdf"] = "corrupt PDF"
    (root / "noise.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 8)
    bad["noise.pdf"] = "corrupt PDF"
    whole = _docx(root / "cut.docx", "Some text.").read_bytes()
    (root / "cut.docx").write_bytes(whole[: len(whole) // 2])
    bad["cut.docx"] = "corrupt DOCX"
    bomb = _docx(root / "bomb.docx", "Looks harmless.")
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/media/zeros.bin", b"\0" * 1000)
    _declare_huge(bomb, "word/media/zeros.bin", 3_000_000_000)
    bad["bomb.docx"] = "refused without unpacking it"
    (root / "huge.txt").write_text("Too big to ingest here. " * 5000, encoding="utf-8")  # 120 kB
    bad["huge.txt"] = "over the size limit of 0.1 MB (setting max_file_mb)"
    (root / "loop-a.txt").symlink_to(root / "loop-b.txt")
    (root / "loop-b.txt").symlink_to(root / "loop-a.txt")
    bad["loop-a.txt"] = "symbolic link"
    bad["loop-b.txt"] = "symbolic link"
    (root / "sub").mkdir()
    (root / "sub" / "back-up").symlink_to(root)  # a folder link into its own tree: walked once
    raw = os.fsencode(str(root)) + b"/caf\xe9.txt"
    with open(raw, "wb") as fh:
        fh.write(b"Latin-1 named file.")
    bad["caf\\xe9.txt"] = "not valid UTF-8"
    return good, {str(root / name): why for name, why in bad.items()}


def test_bad_files_beside_good_ones_each_get_an_error_and_every_good_file_is_found(tmp_path):
    good, bad = build(tmp_path / "mixed")
    home = tmp_path / "home"
    proc = ragmem(home, "ingest", str(tmp_path / "mixed"), "--json", RAGMEM_MAX_FILE_MB="0.1")
    assert proc.returncode == EXIT_SOME_FILES_FAILED, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    failed = {f["path"]: f["reason"] for f in report["failed"]}
    assert set(failed) == set(bad), (sorted(failed), sorted(bad))
    for path, why in bad.items():
        assert why in failed[path], (path, failed[path])
    assert report["added"] == len(good)

    parts = components(home)
    assert set(parts.manifest.sources()) == set(good)
    assert_consistent(snapshot(parts))
    for path, query in good.items():
        hits = parts.retriever.retrieve(query, top_k=3)
        assert hits and hits[0].source == path, (path, query, [h.source for h in hits])
    again = ragmem(home, "ingest", str(tmp_path / "mixed"), "--json", RAGMEM_MAX_FILE_MB="0.1")
    assert json.loads(again.stdout)["chunks_added"] == 0
    print(f"[reliability] bad inputs: {len(bad)} bad files refused, {len(good)} good files ingested")


def test_a_file_that_vanishes_or_changes_during_the_run(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a-first.txt").write_text("The first file mentions herons.", encoding="utf-8")
    (root / "b-vanishes.txt").write_text("This file is deleted mid-run.", encoding="utf-8")
    (root / "c-changes.txt").write_text("Version one talks about owls.", encoding="utf-8")
    parts = components(tmp_path / "home")

    def loader(path: Path):
        doc = load_file(path)
        if path.name == "a-first.txt":  # while the run is under way
            (root / "b-vanishes.txt").unlink()
            (root / "c-changes.txt").write_text("Version two talks about 猫头鹰 instead.", encoding="utf-8")
        return doc

    ingestor = parts.ingestor()
    ingestor.loader = loader
    report = ingestor.run([root])
    assert [(Path(f.path).name, "cannot read" in f.reason) for f in report.failed] == [("b-vanishes.txt", True)]
    assert_consistent(snapshot(parts))
    # c was read after it changed; what was read is indexed, under the hash of what was read
    assert "猫头鹰" in parts.retriever.retrieve("猫头鹰", top_k=1)[0].text
    again = parts.ingestor().run([root])
    assert again.failed == [] and again.added == [] and again.chunks_added == 0
    assert {Path(p).name for p in parts.manifest.sources()} == {"a-first.txt", "c-changes.txt"}
