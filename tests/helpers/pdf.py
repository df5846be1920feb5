"""Write small, valid text PDFs by hand, so tests need neither a network nor reportlab."""

from __future__ import annotations

from pathlib import Path

_LEADING = 14  # points between lines


def write_pdf(path: Path, pages: list[str], *, title: str | None = None) -> Path:
    """Write a PDF with one page per string, each line set in Helvetica 12 pt.

    Args:
        path: Where to write the file.
        pages: The text of each page; ``\\n`` starts a new line; ``""`` makes a page with no
            text at all (like a scanned page without OCR).
        title: The document-information ``/Title``, if any.

    Returns:
        ``path``.

    Raises:
        UnicodeEncodeError: A page holds a character outside Windows-1252 (the standard fonts'
            ``WinAnsiEncoding``): only ASCII and Western European text is supported.
    """
    # Object numbers: 1 catalog, 2 page tree, 3 font, then a page and its content per page,
    # then the info dictionary.
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % pid for pid in page_ids), len(pages)),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    for page_id, text in zip(page_ids, pages, strict=True):
        content = _content_stream(text)
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content)
    info_id = None
    if title is not None:
        info_id = 4 + 2 * len(pages)
        objects[info_id] = b"<< /Title (%s) >>" % _pdf_string(title)

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref_at = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += b"%010d 00000 n \n" % offsets[number]
    trailer = b"/Size %d /Root 1 0 R" % size
    if info_id is not None:
        trailer += b" /Info %d 0 R" % info_id
    out += b"trailer\n<< %s >>\nstartxref\n%d\n%%%%EOF\n" % (trailer, xref_at)
    path.write_bytes(bytes(out))
    return path


def _content_stream(text: str) -> bytes:
    if not text:
        return b""
    ops = [b"BT", b"/F1 12 Tf", b"%d TL" % _LEADING, b"72 720 Td"]
    for i, line in enumerate(text.split("\n")):
        if i:
            ops.append(b"T*")
        ops.append(b"(%s) Tj" % _pdf_string(line))
    ops.append(b"ET")
    return b"\n".join(ops)


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
