"""Turn one file into a `LoadedDocument`: plain-text formats, HTML, DOCX and PDF.

Every problem with a file (unreadable, empty, binary, corrupt, encrypted, unsupported) is
raised as `LoaderError` so that ingest can record it and carry on with the next file.

Third-party parsers are imported inside the functions that use them: importing this module
must stay cheap (``ragmem --help`` imports the CLI, which imports this), while ``unstructured``
alone takes seconds to import (it pulls in spaCy, thinc and torch).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NamedTuple

from rag_memory.errors import LoaderError
from rag_memory.ingest.encoding import clean_text, decode_bytes
from rag_memory.schema import LoadedDocument, Section

logger = logging.getLogger(__name__)

_TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".rst", ".csv", ".json", ".log"})
_HTML_SUFFIXES = frozenset({".html", ".htm"})

DOCX_MAX_UNPACKED_BYTES = 512 * 1_000_000
"""A DOCX whose members add up to more than this, unpacked, is refused before it is unpacked."""

SUPPORTED_SUFFIXES: frozenset[str] = _TEXT_SUFFIXES | _HTML_SUFFIXES | {".pdf", ".docx"}
"""File suffixes (lower-case, with the dot) that `load_file` can read."""

# unstructured pings an analytics endpoint on import and on every partition call, and prints
# an advert, unless these are set. Any non-blank value opts out of the telemetry.
_UNSTRUCTURED_ENV = {
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
}

_MARKDOWN_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_MARKDOWN_H1 = re.compile(r"^ {0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+:._])\1{2,}[ \t]*$")
# lxml refuses a str that declares an encoding; the bytes are decoded already, so drop it.
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


class _Parsed(NamedTuple):
    """What a format-specific loader found; `load_file` adds the file-level fields."""

    title: str | None
    sections: list[Section]
    encoding: str | None = None


class _Partitioners(NamedTuple):
    html: Callable[..., list[Any]]
    docx: Callable[..., list[Any]]


def load_file(path: Path) -> LoadedDocument:
    """Read one file and return its text, title and content hash.

    Args:
        path: The file, absolute; its suffix (case-insensitive) picks the loader and must be
            one of `SUPPORTED_SUFFIXES`.

    Returns:
        The document: one section for text, HTML and DOCX files, one per page with text for
        PDFs. ``source`` is ``str(path)``; ``content_hash`` the sha256 of the file's bytes;
        ``encoding`` the detected encoding for text and HTML files.

    Raises:
        LoaderError: The file cannot be read, is empty, binary, corrupt or encrypted, holds
            no text, or has an unsupported suffix. The message says which.

    Example:
        >>> doc = load_file(Path("/abs/notes.md"))  # doctest: +SKIP
        >>> doc.title, doc.sections[0].text[:20]  # doctest: +SKIP
    """
    source = str(path)
    suffix = path.suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        raise LoaderError(
            source,
            f"unsupported file type {suffix or '(no suffix)'!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}",
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoaderError(source, f"cannot read file: {exc.strerror or exc}") from exc
    if not data:
        raise LoaderError(source, "empty file")

    with _parser_warnings() as warned:
        parsed = loader(data, source, suffix)
    return LoadedDocument(
        source=source,
        title=parsed.title or path.stem,
        sections=tuple(parsed.sections),
        content_hash=hashlib.sha256(data).hexdigest(),
        encoding=parsed.encoding,
        warnings=tuple(dict.fromkeys(warned)),
    )


# Parsers that log what they mend in a damaged file; their warnings belong to that file's entry
# in the ingest report, not to the terminal (where they would break the progress bar).
_PARSER_LOGGERS = ("pypdf", __name__)
_MAX_WARNINGS_PER_FILE = 20


class _ThreadCapture(logging.Handler):
    """Collects the warnings one thread's parser logs (loaders may run in several threads)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.messages) < _MAX_WARNINGS_PER_FILE:
            self.messages.append(" ".join(record.getMessage().split()))


_capturing = [0]
_capturing_lock = threading.Lock()


@contextlib.contextmanager
def _parser_warnings() -> Iterator[list[str]]:
    handler = _ThreadCapture()
    loggers = [logging.getLogger(name) for name in _PARSER_LOGGERS]
    with _capturing_lock:
        _capturing[0] += 1
        for lg in loggers:
            lg.addHandler(handler)
            lg.propagate = False
    try:
        yield handler.messages
    finally:
        with _capturing_lock:
            _capturing[0] -= 1
            for lg in loggers:
                lg.removeHandler(handler)
                if not _capturing[0]:
                    lg.propagate = True


# -- plain text ------------------------------------------------------------------------------


def _load_text(data: bytes, source: str, suffix: str) -> _Parsed:
    # JSON and CSV are indexed as the text a person would read, not parsed into records.
    text, encoding = decode_bytes(data, source)
    if not text.strip():
        raise LoaderError(source, "no text (the file holds only whitespace)")
    title = None
    if suffix in (".md", ".markdown"):
        title = _markdown_title(text)
    elif suffix == ".rst":
        title = _rst_title(text)
    return _Parsed(title, [Section(text)], encoding)


def _markdown_title(text: str) -> str | None:
    fence: str | None = None
    for line in text.splitlines():
        if marker := _MARKDOWN_FENCE.match(line):
            # A fence closes only with the character that opened it (``` inside ~~~ is text).
            if fence is None:
                fence = marker.group(1)[0]
            elif marker.group(1)[0] == fence:
                fence = None
        elif fence is None and (heading := _MARKDOWN_H1.match(line)):
            return heading.group(1).strip()
    return None


def _rst_title(text: str) -> str | None:
    # The first section heading is the title: a text line directly underlined by a run of one
    # punctuation character at least as long (an overline above it, if any, is skipped over).
    lines = text.splitlines()
    for line, below in zip(lines, lines[1:], strict=False):
        title = line.strip()
        if title and not _RST_ADORNMENT.match(line) and _RST_ADORNMENT.match(below):
            if len(below.strip()) >= len(title):
                return title
    return None


# -- HTML --------------------------------------------------------------------------------------


def _load_html(data: bytes, source: str, suffix: str) -> _Parsed:
    # Decoded by us rather than by unstructured, so GBK or Big5 pages get the same detection
    # as text files instead of unstructured's UTF-8 default.
    markup, encoding = decode_bytes(data, source)
    markup = _XML_DECLARATION.sub("", markup, count=1)
    if not markup.strip():
        raise LoaderError(source, "no text (the file holds only whitespace)")
    partition_html = _unstructured().html
    try:
        elements = partition_html(text=markup, languages=[""])
    except Exception as exc:
        raise LoaderError(source, f"unreadable HTML: {_describe(exc)}") from exc
    body = _join_elements(elements)
    if not body:
        raise LoaderError(source, "no text (the page has no visible text)")
    return _Parsed(_html_title(markup), [Section(body)], encoding)


class _HtmlTitleFinder(HTMLParser):
    """Collect the text of the first ``<title>`` and the first ``<h1>`` of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: dict[str, str] = {}
        self._open: str | None = None
        self._parts: list[str] = []
        self._svg_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "svg":
            self._svg_depth += 1
        # An SVG's <title> is an image caption, not the page's title.
        elif tag in ("title", "h1") and tag not in self.found and not self._svg_depth:
            self._open, self._parts = tag, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg_depth = max(0, self._svg_depth - 1)
        elif tag == self._open:
            self.found[tag] = " ".join("".join(self._parts).split())
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self._parts.append(data)


def _html_title(markup: str) -> str | None:
    finder = _HtmlTitleFinder()
    finder.feed(markup)
    finder.close()
    return finder.found.get("title") or finder.found.get("h1") or None


# -- DOCX --------------------------------------------------------------------------------------


def _load_docx(data: bytes, source: str, suffix: str) -> _Parsed:
    import docx  # python-docx; unstructured reads DOCX with it too

    _check_unpacked_size(data, source)
    # Opened with python-docx first: it fails fast with a plain reason on a file that is not
    # a Word document, and it is where the document's title lives.
    try:
        document = docx.Document(io.BytesIO(data))
        core_title = document.core_properties.title
        styled = [(p.style.name if p.style is not None else "", p.text) for p in document.paragraphs]
    except Exception as exc:
        raise LoaderError(source, f"corrupt DOCX (not a readable Word document): {_describe(exc)}") from exc

    partition_docx = _unstructured().docx
    try:
        elements = partition_docx(
            file=io.BytesIO(data),
            include_page_breaks=False,
            infer_table_structure=False,
            languages=[""],
        )
    except Exception as exc:
        raise LoaderError(source, f"cannot extract text from DOCX: {_describe(exc)}") from exc
    body = _join_elements(elements)
    if not body:
        raise LoaderError(source, "no text (the document is empty)")
    return _Parsed(_docx_title(core_title, styled), [Section(body)])


def _check_unpacked_size(data: bytes, source: str) -> None:
    """Refuse a DOCX whose members would unpack past ``DOCX_MAX_UNPACKED_BYTES`` (a zip bomb),
    from the sizes its directory declares, before anything is decompressed. (Python's zipfile
    stops reading a member at its declared size, so the declaration cannot be outrun.)"""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            total = sum(max(info.file_size, 0) for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise LoaderError(source, f"corrupt DOCX (not a readable Word document): {_describe(exc)}") from exc
    if total > DOCX_MAX_UNPACKED_BYTES:
        raise LoaderError(
            source,
            f"DOCX would unpack to {total / 1e6:,.0f} MB, over the limit of {DOCX_MAX_UNPACKED_BYTES / 1e6:g} MB"
            " (a zip bomb, or a document made mostly of embedded media); refused without unpacking it",
        )


def _docx_title(core_title: str | None, styled: list[tuple[str, str]]) -> str | None:
    if core_title and core_title.strip():
        return core_title.strip()
    for style, text in styled:
        if (style == "Title" or style.startswith("Heading")) and text.strip():
            return text.strip()
    return None


# -- PDF ---------------------------------------------------------------------------------------


def _load_pdf(data: bytes, source: str, suffix: str) -> _Parsed:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
    except Exception as exc:
        raise LoaderError(source, f"corrupt PDF: {_describe(exc)}") from exc
    if encrypted:
        _unlock_pdf(reader, source)

    try:
        pages = list(reader.pages)
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception as exc:
        raise LoaderError(source, f"corrupt PDF: {_describe(exc)}") from exc

    sections: list[Section] = []
    first_error: Exception | None = None
    for number, page in enumerate(pages, start=1):
        try:
            raw = page.extract_text()
        except Exception as exc:
            # One damaged page should not cost the rest of the document.
            logger.warning("%s: skipping page %d, its text cannot be extracted: %s", source, number, exc)
            first_error = first_error or exc
            continue
        text = clean_text(raw).strip()
        if text:
            sections.append(Section(text, page=number))

    if not sections:
        if first_error is not None:
            raise LoaderError(source, f"corrupt PDF: {_describe(first_error)}") from first_error
        raise LoaderError(source, "no text layer (a scanned PDF? OCR is not supported)")
    return _Parsed(title.strip() if isinstance(title, str) and title.strip() else None, sections)


def _unlock_pdf(reader: Any, source: str) -> None:
    from pypdf import PasswordType

    # Many PDFs are encrypted only to restrict printing or copying, with an empty user password.
    try:
        unlocked = reader.decrypt("")
    except Exception as exc:
        raise LoaderError(source, f"encrypted PDF that cannot be decrypted: {_describe(exc)}") from exc
    if unlocked == PasswordType.NOT_DECRYPTED:
        raise LoaderError(
            source, "encrypted PDF (password-protected); remove the password and ingest it again"
        )


# -- shared ------------------------------------------------------------------------------------

_LOADERS: dict[str, Callable[[bytes, str, str], _Parsed]] = {
    **dict.fromkeys(_TEXT_SUFFIXES, _load_text),
    **dict.fromkeys(_HTML_SUFFIXES, _load_html),
    ".docx": _load_docx,
    ".pdf": _load_pdf,
}


def _join_elements(elements: Iterable[Any]) -> str:
    # Each unstructured element is a block (paragraph, heading, list item, table): a blank line
    # between them keeps paragraph boundaries for the chunker.
    texts = (clean_text(str(getattr(element, "text", "") or "")).strip() for element in elements)
    return "\n\n".join(text for text in texts if text)


def _describe(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@functools.cache
def _unstructured() -> _Partitioners:
    """Import unstructured's HTML and DOCX partitioners with every network path shut.

    unstructured 0.27 reaches the network in three places on our paths: an analytics ping on
    import and another on each partition call (both skipped when ``DO_NOT_TRACK`` or
    ``SCARF_NO_ANALYTICS`` is set, so they are set before the import), and its text-type
    heuristics, which load the spaCy model ``en_core_web_sm`` and, when it is missing,
    download and install it from GitHub. `_keep_nlp_offline` closes the last one.
    """
    for name, value in _UNSTRUCTURED_ENV.items():
        # Blank counts as unset: unstructured treats only a non-blank value as an opt-out.
        if not os.environ.get(name, "").strip():
            os.environ[name] = value
    from unstructured.partition.docx import partition_docx
    from unstructured.partition.html import partition_html

    _keep_nlp_offline()
    return _Partitioners(html=partition_html, docx=partition_docx)


def _keep_nlp_offline() -> None:
    """Make unstructured's spaCy loader use an installed model or a blank pipeline, never a download.

    The heuristics only decide an element's category (NarrativeText or Text); the element's
    text is the same either way, so a blank English pipeline with a rule-based sentencizer
    costs us nothing when ``en_core_web_sm`` is not installed.
    """
    import spacy
    from unstructured.nlp import tokenize

    if not hasattr(tokenize, "_get_nlp"):
        logger.warning(
            "this unstructured version has no nlp.tokenize._get_nlp; it may try to download "
            "a spaCy model while partitioning"
        )
        return
    model = getattr(tokenize, "_SPACY_MODEL_NAME", "en_core_web_sm")
    exclude = list(getattr(tokenize, "_SPACY_EXCLUDE", []))

    @functools.cache
    def load_nlp() -> Any:
        try:
            return spacy.load(model, exclude=exclude)
        except OSError:
            logger.debug("spaCy model %s is not installed; using a blank English pipeline", model)
            nlp = spacy.blank("en")
            nlp.add_pipe("sentencizer")
            return nlp

    tokenize._get_nlp = load_nlp
