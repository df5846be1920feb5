"""Loaders: every supported format, legacy encodings, broken files, and no network access."""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rag_memory.errors import LoaderError
from rag_memory.ingest.encoding import decode_bytes
from rag_memory.ingest.loaders import SUPPORTED_SUFFIXES, load_file
from rag_memory.schema import Section
from tests.helpers.pdf import write_pdf

REPO = Path(__file__).resolve().parents[2]

ZH = (
    "检索增强生成把外部知识库和大语言模型结合起来。系统先检索相关文档，再根据上下文生成回答。\n"
    "长期记忆保存用户的偏好和事实，并在以后的对话中召回。\n"
)
ZH_TRADITIONAL = (
    "檢索增強生成把外部知識庫和大語言模型結合起來。系統先檢索相關文件，再根據上下文生成回答。\n"
    "長期記憶保存使用者的偏好和事實。\n"
)
# U+20000 and U+20001 exist in GB18030 (four-byte codes) but not in GBK.
ZH_BEYOND_GBK = ZH + "扩展B区：𠀀𠀁。\n"


def _docx(path: Path, paragraphs: list[tuple[str, str]], *, core_title: str | None = None) -> Path:
    """Write a DOCX of (style, text) paragraphs; style "" is Normal."""
    import docx

    document = docx.Document()
    for style, text in paragraphs:
        document.add_paragraph(text, style=style or None)
    if core_title is not None:
        document.core_properties.title = core_title
    document.save(str(path))
    return path


# -- each format ------------------------------------------------------------------------------


def test_txt_is_one_section_with_hash_source_and_stem_title(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"First line.\nSecond line.\n")

    doc = load_file(path)

    assert doc.source == str(path)
    assert doc.title == "notes"
    assert doc.sections == (Section("First line.\nSecond line.\n"),)
    assert doc.content_hash == hashlib.sha256(b"First line.\nSecond line.\n").hexdigest()
    assert doc.encoding == "utf-8"


def test_text_is_normalised_newlines_controls_and_nfc(tmp_path):
    path = tmp_path / "messy.text"
    path.write_bytes("cafe\u0301\r\nline\x0btwo\x07\rend\tok\x1b[0m".encode())

    assert load_file(path).text == "caf\u00e9\nline\ntwo\nend\tok[0m"


def test_markdown_title_is_first_h1_outside_code_fences(tmp_path):
    path = tmp_path / "guide.md"
    path.write_text(
        "Intro line.\n\n```bash\n# not a title\n```\n\n## Subsection first\n\n# Real Title #\n\nBody.\n",
        encoding="utf-8",
    )

    doc = load_file(path)

    assert doc.title == "Real Title"
    assert "# not a title" in doc.text


def test_markdown_without_heading_falls_back_to_stem(tmp_path):
    path = tmp_path / "plain.MARKDOWN"
    path.write_text("just text\n", encoding="utf-8")

    assert load_file(path).title == "plain"


def test_rst_title_is_first_underlined_line(tmp_path):
    path = tmp_path / "manual.rst"
    path.write_text(
        "==============\n Ragmem Manual\n==============\n\nIntro.\n\nInstall\n-------\n\nSteps.\n",
        encoding="utf-8",
    )

    assert load_file(path).title == "Ragmem Manual"


def test_rst_with_short_underline_is_not_a_title(tmp_path):
    path = tmp_path / "notes.rst"
    path.write_text("A long line of text\n===\n\nInstall\n-------\n", encoding="utf-8")

    assert load_file(path).title == "Install"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("table.csv", "name,score\nalice,3\n"),
        ("data.json", '{"question": "why?", "answer": [1, 2]}\n'),
        ("server.log", "2024-01-01 INFO started\n2024-01-01 WARN slow\n"),
    ],
)
def test_csv_json_and_log_are_read_as_text_verbatim(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")

    doc = load_file(path)

    assert doc.sections == (Section(content),)
    assert doc.title == Path(name).stem


def test_html_blocks_are_separated_and_scripts_and_styles_do_not_leak(tmp_path):
    path = tmp_path / "page.HTML"
    path.write_text(
        "<!DOCTYPE html><html><head><title>The  Page\n Title</title>"
        "<style>body { color: red }</style><script>var secret = 'LEAKED';</script></head>"
        "<body><h1>Heading</h1><p>This paragraph has two sentences. It is narrative.</p>"
        "<script>document.write('ALSO LEAKED')</script>"
        "<ul><li>first item</li><li>second item</li></ul></body></html>",
        encoding="utf-8",
    )

    doc = load_file(path)

    assert doc.title == "The Page Title"
    assert doc.sections == (
        Section("Heading\n\nThis paragraph has two sentences. It is narrative.\n\nfirst item\n\nsecond item"),
    )
    assert doc.encoding == "utf-8"


def test_html_without_title_uses_first_h1(tmp_path):
    path = tmp_path / "untitled.htm"
    path.write_text(
        "<html><body><svg><title>icon</title></svg><h1>Main <b>Heading</b></h1><p>Text.</p></body></html>",
        encoding="utf-8",
    )

    assert load_file(path).title == "Main Heading"


def test_html_with_only_script_has_no_text(tmp_path):
    path = tmp_path / "empty.html"
    path.write_text("<html><head><script>var a = 1;</script></head><body></body></html>", encoding="utf-8")

    with pytest.raises(LoaderError, match="no text"):
        load_file(path)


def test_docx_title_from_title_style_and_body_in_order(tmp_path):
    path = _docx(
        tmp_path / "report.docx",
        [
            ("Title", "Quarterly Report"),
            ("", "Revenue grew in every region this quarter."),
            ("Heading 1", "Risks"),
            ("", "Supply chains remain fragile."),
        ],
    )

    doc = load_file(path)

    assert doc.title == "Quarterly Report"
    assert doc.sections == (
        Section(
            "Quarterly Report\n\nRevenue grew in every region this quarter.\n\nRisks\n\n"
            "Supply chains remain fragile."
        ),
    )
    assert doc.encoding is None


def test_docx_core_properties_title_wins_over_headings(tmp_path):
    path = _docx(
        tmp_path / "memo.docx", [("Heading 1", "Background"), ("", "Text.")], core_title="Official Memo"
    )

    assert load_file(path).title == "Official Memo"


def test_docx_without_headings_uses_stem(tmp_path):
    path = _docx(tmp_path / "scratch.docx", [("", "Only a normal paragraph.")])

    assert load_file(path).title == "scratch"


def test_pdf_has_one_section_per_page_with_text(tmp_path):
    path = write_pdf(
        tmp_path / "paper.pdf",
        ["Page one says hello.\nA second line.", "", "Page three says goodbye."],
        title="A Paper",
    )

    doc = load_file(path)

    assert doc.title == "A Paper"
    assert doc.sections == (
        Section("Page one says hello.\nA second line.", page=1),
        Section("Page three says goodbye.", page=3),
    )
    assert doc.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()


def test_pdf_two_pages_without_metadata_title_uses_stem(tmp_path):
    path = write_pdf(
        tmp_path / "slides.pdf", ["First page (intro).", "Second page: caf\u00e9 costs 5 \u20ac."]
    )

    doc = load_file(path)

    assert doc.title == "slides"
    assert [(s.page, s.text) for s in doc.sections] == [
        (1, "First page (intro)."),
        (2, "Second page: caf\u00e9 costs 5 \u20ac."),
    ]


def test_pdf_encrypted_with_empty_user_password_is_read(tmp_path):
    from pypdf import PdfReader, PdfWriter

    plain = write_pdf(tmp_path / "plain.pdf", ["Locked for printing only."])
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    path = tmp_path / "restricted.pdf"
    writer.write(path)

    assert load_file(path).sections == (Section("Locked for printing only.", page=1),)


@pytest.mark.parametrize("algorithm", ["AES-128", "AES-256"])
def test_pdf_copy_protected_with_aes_is_read(tmp_path, algorithm):
    # pypdf needs the cryptography package for AES; without it this was "corrupt PDF: DependencyError".
    from pypdf import PdfReader, PdfWriter

    plain = write_pdf(tmp_path / "plain.pdf", ["Copy protected with AES."])
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password="", owner_password="owner", algorithm=algorithm)
    path = tmp_path / "aes.pdf"
    writer.write(path)

    assert load_file(path).sections == (Section("Copy protected with AES.", page=1),)


def test_pdf_parser_warnings_go_to_the_file_not_the_terminal(tmp_path, caplog):
    import re

    whole = write_pdf(tmp_path / "whole.pdf", ["Page one survives.", "So does page two."]).read_bytes()
    path = tmp_path / "bent.pdf"  # a wrong startxref offset: pypdf mends it and warns
    path.write_bytes(re.sub(rb"startxref\s+(\d+)", lambda m: b"startxref\n%d" % (int(m.group(1)) + 7), whole))

    with caplog.at_level(logging.WARNING):
        doc = load_file(path)

    assert [s.text for s in doc.sections] == ["Page one survives.", "So does page two."]
    assert any("startxref" in w for w in doc.warnings)
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]  # nothing reached the console
    assert load_file(write_pdf(tmp_path / "fine.pdf", ["Clean."])).warnings == ()


def test_docx_that_would_unpack_past_the_limit_is_refused_unopened(tmp_path, monkeypatch):
    import zipfile

    from rag_memory.ingest import loaders

    path = _docx(tmp_path / "bomb.docx", [("", "Harmless looking text.")])
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/media/zeros.bin", b"\0" * 3_000_000)
    assert path.stat().st_size < 100_000
    monkeypatch.setattr(loaders, "DOCX_MAX_UNPACKED_BYTES", 2_000_000)
    opened = []
    monkeypatch.setattr("docx.Document", lambda *a, **k: opened.append(a))

    with pytest.raises(LoaderError, match=r"would unpack to [3-9] MB, over the limit of 2 MB.*refused without unpacking") as info:
        load_file(path)
    assert info.value.path == str(path) and opened == []


def test_pdf_with_user_password_is_reported_as_encrypted(tmp_path):
    from pypdf import PdfReader, PdfWriter

    plain = write_pdf(tmp_path / "plain.pdf", ["Secret."])
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    path = tmp_path / "secret.pdf"
    writer.write(path)

    with pytest.raises(LoaderError, match="encrypted PDF") as info:
        load_file(path)
    assert info.value.path == str(path)


def test_pdf_without_text_layer_is_reported(tmp_path):
    path = write_pdf(tmp_path / "scan.pdf", ["", ""])

    with pytest.raises(LoaderError, match="no text layer .*OCR is not supported"):
        load_file(path)


# -- encodings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "text", "encoding"),
    [
        pytest.param(ZH.encode("utf-8"), ZH, "utf-8", id="utf-8"),
        pytest.param(codecs.BOM_UTF8 + ZH.encode("utf-8"), ZH, "utf-8-sig", id="utf-8-bom"),
        pytest.param(ZH.encode("gbk"), ZH, "gb18030", id="gbk"),
        pytest.param(ZH_BEYOND_GBK.encode("gb18030"), ZH_BEYOND_GBK, "gb18030", id="gb18030"),
        pytest.param(ZH_TRADITIONAL.encode("big5"), ZH_TRADITIONAL, "big5", id="big5"),
        pytest.param(codecs.BOM_UTF16_LE + ZH.encode("utf-16-le"), ZH, "utf-16-le", id="utf-16-le-bom"),
        pytest.param(codecs.BOM_UTF16_BE + ZH.encode("utf-16-be"), ZH, "utf-16-be", id="utf-16-be-bom"),
        pytest.param(codecs.BOM_UTF32_LE + ZH.encode("utf-32-le"), ZH, "utf-32-le", id="utf-32-le-bom"),
    ],
)
def test_chinese_text_file_decodes_to_the_exact_original(tmp_path, data, text, encoding):
    path = tmp_path / "中文.txt"
    path.write_bytes(data)

    doc = load_file(path)

    assert doc.text == text
    assert doc.encoding == encoding
    assert doc.title == "中文"


@pytest.mark.parametrize(
    ("text", "encoded_as", "detected"),
    [
        pytest.param("你好，世界！", "gbk", "gb18030", id="one-gbk-phrase"),
        pytest.param("今天天气很好。我们去公园散步吧。", "gbk", "gb18030", id="two-gbk-sentences"),
        pytest.param("這是一個測試。我們去公園散步吧。", "big5", "big5", id="two-big5-sentences"),
        pytest.param(
            "検索拡張生成は外部の知識ベースと大規模言語モデルを組み合わせます。関連文書を検索します。",
            "shift_jis",
            "cp932",
            id="shift-jis",
        ),
        pytest.param(
            "한국어 텍스트입니다. 이 문서는 검색 증강 생성에 대한 설명입니다.", "cp949", "cp949", id="korean"
        ),
        pytest.param(
            "Le café est très bon à Paris. Les élèves étudient près de la rivière. Ça coûte 5 €.",
            "cp1252",
            "cp1252",
            id="cp1252-french",
        ),
        pytest.param(
            "Größe, Übung und Straße: schön für die Bürger.", "cp1252", "cp1252", id="cp1252-german"
        ),
        pytest.param("El niño comió piña. ¿Dónde está la estación?", "latin-1", "cp1252", id="latin-1"),
        pytest.param("Привет, мир! Это проверка кодировки текста.", "cp1251", "cp1251", id="cp1251"),
        pytest.param(
            "RAG 系统 version 2：支持 PDF 和 HTML。\n第二行。\n", "utf-16-le", "utf-16-le", id="utf16le"
        ),
        pytest.param(
            "RAG 系统 version 2：支持 PDF 和 HTML。\n第二行。\n", "utf-16-be", "utf-16-be", id="utf16be"
        ),
        pytest.param(
            "一个最好的例子。\n一二三，最后。\n", "utf-16-le", "utf-16-le", id="utf16le-nul-both-sides"
        ),
    ],
)
def test_decode_bytes_detects_legacy_and_bomless_encodings(text, encoded_as, detected):
    assert decode_bytes(text.encode(encoded_as), "x.txt") == (text, detected)


def test_stray_nul_in_utf8_is_dropped_not_fatal():
    data = ("A log line that goes on for a while. " * 5 + "\x00tail").encode()

    text, encoding = decode_bytes(data, "x.log")

    assert encoding == "utf-8"
    assert text.endswith(" tail") and "\x00" not in text


def test_chinese_html_in_gb18030_with_declarations(tmp_path):
    path = tmp_path / "zh.html"
    page = (
        '<?xml version="1.0" encoding="gb2312"?>\n'
        '<html><head><meta charset="gb2312"><title>检索增强生成</title></head><body>'
        "<h1>简介</h1><p>检索增强生成把外部知识库和大语言模型结合起来。</p>"
        "<p>系统先检索相关文档，再根据上下文生成回答。</p></body></html>"
    )
    path.write_bytes(page.encode("gb18030"))

    doc = load_file(path)

    assert doc.encoding == "gb18030"
    assert doc.title == "检索增强生成"
    assert (
        doc.text
        == "简介\n\n检索增强生成把外部知识库和大语言模型结合起来。\n\n系统先检索相关文档，再根据上下文生成回答。"
    )


def test_chinese_docx(tmp_path):
    path = _docx(
        tmp_path / "说明.docx",
        [
            ("Heading 1", "长期记忆"),
            ("", "长期记忆保存用户的偏好和事实。"),
            ("", "系统在以后的对话中召回它们。"),
        ],
    )

    doc = load_file(path)

    assert doc.title == "长期记忆"
    assert doc.text == "长期记忆\n\n长期记忆保存用户的偏好和事实。\n\n系统在以后的对话中召回它们。"


# -- files that cannot be loaded --------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"%PDF-1.4\n" + bytes(range(256)) * 4, id="garbage-after-header"),
        pytest.param(b"not a pdf at all", id="not-a-pdf"),
    ],
)
def test_corrupt_pdf_is_a_loader_error(tmp_path, data):
    path = tmp_path / "broken.pdf"
    path.write_bytes(data)

    with pytest.raises(LoaderError, match="corrupt PDF") as info:
        load_file(path)
    assert info.value.__cause__ is not None


def test_truncated_pdf_is_a_loader_error(tmp_path):
    whole = write_pdf(tmp_path / "whole.pdf", ["Some text on page one.", "And on page two."]).read_bytes()
    path = tmp_path / "cut.pdf"
    path.write_bytes(whole[: len(whole) // 2])

    with pytest.raises(LoaderError, match="corrupt PDF"):
        load_file(path)


def test_truncated_docx_is_a_loader_error(tmp_path):
    whole = _docx(tmp_path / "whole.docx", [("", "Some text.")]).read_bytes()
    path = tmp_path / "cut.docx"
    path.write_bytes(whole[: len(whole) // 2])

    with pytest.raises(LoaderError, match="corrupt DOCX") as info:
        load_file(path)
    assert info.value.__cause__ is not None


def test_random_bytes_named_docx_is_a_loader_error(tmp_path):
    path = tmp_path / "fake.docx"
    path.write_bytes(bytes(range(256)) * 8)

    with pytest.raises(LoaderError, match="corrupt DOCX"):
        load_file(path)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(bytes(range(256)) * 10, id="all-bytes"),
        pytest.param(
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00\x1f\xf3\xffa",
            id="png-header",
        ),
        pytest.param(b"\x01\x02\x03\x04text\x05\x06\x07\x08" * 50, id="control-chars"),
    ],
)
def test_binary_content_with_txt_name_is_rejected(tmp_path, data):
    path = tmp_path / "image.txt"
    path.write_bytes(data)

    with pytest.raises(LoaderError, match="binary or undecodable content"):
        load_file(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.md"
    path.write_bytes(b"")

    with pytest.raises(LoaderError) as info:
        load_file(path)
    assert info.value.reason == "empty file"


@pytest.mark.parametrize("name", ["blank.txt", "blank.html"])
def test_whitespace_only_file_has_no_text(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b" \n\t\r\n   \n")

    with pytest.raises(LoaderError, match="no text"):
        load_file(path)


def test_unsupported_suffix_names_the_supported_ones(tmp_path):
    path = tmp_path / "slides.pptx"
    path.write_bytes(b"whatever")

    with pytest.raises(LoaderError) as info:
        load_file(path)
    assert "'.pptx'" in info.value.reason
    assert all(suffix in info.value.reason for suffix in SUPPORTED_SUFFIXES)


def test_missing_file_and_directory_give_the_os_reason(tmp_path):
    with pytest.raises(LoaderError, match="cannot read file: No such file or directory"):
        load_file(tmp_path / "gone.txt")

    folder = tmp_path / "folder.md"
    folder.mkdir()
    with pytest.raises(LoaderError, match="cannot read file: Is a directory"):
        load_file(folder)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_permission_denied_gives_the_os_reason(tmp_path):
    path = tmp_path / "private.txt"
    path.write_text("secret", encoding="utf-8")
    path.chmod(0)

    with pytest.raises(LoaderError, match="cannot read file: Permission denied"):
        load_file(path)


# -- no network, cheap import -----------------------------------------------------------------


def test_html_and_docx_load_with_sockets_blocked(tmp_path, monkeypatch):
    attempts: list[object] = []

    def refuse_connect(self, address):
        attempts.append(address)
        raise OSError("network blocked by test")

    def refuse_create_connection(address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network blocked by test")

    def refuse_getaddrinfo(host, *args, **kwargs):
        attempts.append(host)
        raise OSError("network blocked by test")

    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(socket, "create_connection", refuse_create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_getaddrinfo)
    # Narrative-looking paragraphs send unstructured into its spaCy text-type heuristics,
    # the path that downloads a model when none is installed.
    html = tmp_path / "offline.html"
    html.write_text(
        "<html><body><p>The system retrieves documents before it answers. It then writes.</p>"
        "<p>Short Title Like Text</p></body></html>",
        encoding="utf-8",
    )
    docx_path = _docx(
        tmp_path / "offline.docx", [("", "Memory keeps facts about the user. It recalls them.")]
    )

    html_doc = load_file(html)
    docx_doc = load_file(docx_path)

    assert html_doc.text == (
        "The system retrieves documents before it answers. It then writes.\n\nShort Title Like Text"
    )
    assert docx_doc.text == "Memory keeps facts about the user. It recalls them."
    assert attempts == []
    from unstructured.nlp import tokenize

    assert tokenize._get_nlp.cache_info().currsize == 1, "the spaCy path was not exercised"


def test_loaders_opt_out_of_unstructured_telemetry_themselves(tmp_path, monkeypatch):
    # conftest sets the opt-out variables for the whole run; without them, unstructured sends
    # an analytics request from a background thread on every partition call.
    import threading

    from rag_memory.ingest import loaders

    attempts: list[object] = []

    def refuse_getaddrinfo(host, *args, **kwargs):
        attempts.append(host)
        raise OSError("network blocked by test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse_getaddrinfo)
    for name in ("DO_NOT_TRACK", "SCARF_NO_ANALYTICS"):
        monkeypatch.delenv(name, raising=False)
    loaders._unstructured.cache_clear()
    path = tmp_path / "a.html"
    path.write_text("<p>This paragraph is narrative text. It has a verb.</p>", encoding="utf-8")

    assert load_file(path).text == "This paragraph is narrative text. It has a verb."
    for thread in threading.enumerate():
        if thread.name == "unstructured-telemetry":
            thread.join(timeout=5)
    assert attempts == []
    assert os.environ["DO_NOT_TRACK"] == "1"
    assert os.environ["SCARF_NO_ANALYTICS"] == "true"


def test_importing_loaders_imports_no_parser():
    heavy = ["unstructured", "pypdf", "docx", "charset_normalizer", "spacy", "torch"]
    script = f"import sys, rag_memory.ingest.loaders; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
