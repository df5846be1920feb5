"""Turn a text file's bytes into clean Unicode, whatever encoding it was saved in.

Order of evidence, strongest first: a byte-order mark, then strict UTF-8 (most files today),
then ``charset-normalizer`` for legacy encodings (GB18030/GBK, Big5, Shift-JIS, cp1252 ...).
Content that none of these can read as text is reported as binary rather than guessed at,
because indexing mojibake is worse than skipping a file.
"""

from __future__ import annotations

import codecs
import logging
import re
import unicodedata

from rag_memory.errors import LoaderError

logger = logging.getLogger(__name__)

# UTF-32 marks first: the UTF-32-LE mark starts with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Decode with the superset: a GB2312/GBK file is valid GB18030, and GB18030 also covers the
# characters GBK lacks, so a detector's narrower guess can never make us fail on a rare glyph.
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
}

# Multi-byte CJK codecs the detector may name; any other non-UTF name is a single-byte page.
_MULTIBYTE_FAMILIES = frozenset(
    {
        "gb18030",
        "hz",
        "big5",
        "big5hkscs",
        "cp950",
        "cp932",
        "shift_jis_2004",
        "shift_jisx0213",
        "euc_jp",
        "euc_jis_2004",
        "euc_jisx0213",
        "iso2022_jp",
        "cp949",
        "johab",
        "iso2022_kr",
    }
)

# Where each legacy CJK standard keeps its most frequent characters, as ranges of 2-byte codes;
# in order of preference (the project reads Chinese first). See _rerank_cjk.
_COMMON_BLOCKS: dict[str, tuple[tuple[int, int], ...]] = {
    # GB2312 punctuation, fullwidth forms and the 3,755 level-1 hanzi.
    "gb18030": ((0xA1A1, 0xA3FE), (0xB0A1, 0xD7F9)),
    # Big5 punctuation and the 5,401 common hanzi.
    "big5": ((0xA140, 0xA3BF), (0xA440, 0xC67E)),
    # Shift-JIS punctuation, fullwidth forms, kana and the 2,965 level-1 kanji.
    "cp932": ((0x8140, 0x8396), (0x889F, 0x9872)),
    # EUC-JP: the same JIS X 0208 rows as above, EUC-coded.
    "euc_jp": ((0xA1A1, 0xA5F6), (0xB0A1, 0xCFD3)),
    # EUC-KR / UHC punctuation and the 2,350 KS X 1001 hangul.
    "cp949": ((0xA1A1, 0xA1FE), (0xB0A1, 0xC8FE)),
}
# Detector names whose common characters sit where a listed encoding's do.
_BLOCK_ALIASES = {"euc_jis_2004": "euc_jp", "euc_jisx0213": "euc_jp", "cp950": "big5", "big5hkscs": "big5"}
# Enough characters to judge; the scoring loop is pure Python.
_COMMON_SAMPLE_CHARS = 2_000

# A single-byte guess may be chaos-free under several code pages (a French text reads as
# cp1250, cp1252 or mac_iceland alike); cp1252 is by far the most common, so it wins ties.
_WESTERN_TIE_TOLERANCE = 0.02

# Share of control characters (after decoding) above which content is binary, not text.
# Set well above what real text carries: a coloured log line has about one ESC per 30 chars.
_MAX_CONTROL_RATIO = 0.10

# Up to this share of NUL bytes, valid UTF-8 is still read as UTF-8; UTF-16 text of any
# language with line breaks or ASCII has far more.
_MAX_STRAY_NUL_RATIO = 0.01

# UTF-16 text that is also valid UTF-8 has mostly ASCII code units, each with a zero byte.
_MIN_WIDE_ASCII_NUL_RATIO = 0.2

# Wide encodings tried, with their code-unit size, when bytes carry NULs but no byte-order mark.
_WIDE_ENCODINGS: tuple[tuple[str, int], ...] = (
    ("utf-16-le", 2),
    ("utf-16-be", 2),
    ("utf-32-le", 4),
    ("utf-32-be", 4),
)
# charset-normalizer's own default cut-off between text and noise.
_MAX_MESS = 0.2
# The mess ratio is computed in Python per character; a prefix decides as well as the whole.
_MESS_SAMPLE_CHARS = 20_000

_NEWLINES = re.compile(r"\r\n|[\r\v\f\x85\u2028\u2029]")
# Unicode category Cc is exactly C0, DEL and C1; these are all of it except \t and \n.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Controls that no text file holds; line and page breaks (\v \f \r NEL) are not counted.
_BINARY_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")


def decode_bytes(data: bytes, path: str) -> tuple[str, str]:
    """Decode a text file's bytes and normalise the result.

    Args:
        data: The file's raw bytes.
        path: The file's path, only to name it in errors.

    Returns:
        ``(text, encoding)``: the text with newlines as ``\\n``, control characters other than
        ``\\n`` and ``\\t`` removed, NFC-normalised; and the Python codec name it was decoded
        with (``"utf-8"``, ``"utf-16-le"``, ``"gb18030"`` ...).

    Raises:
        LoaderError: The bytes are binary or in no encoding that can be detected.

    Example:
        >>> decode_bytes("中文".encode("gbk") * 20, "a.txt")[1]
        'gb18030'
    """
    text, encoding = _decode(data, path)
    controls = len(_BINARY_CONTROLS.findall(text))
    if text and controls / len(text) > _MAX_CONTROL_RATIO:
        raise LoaderError(path, f"binary or undecodable content ({controls} control characters)")
    return clean_text(text), encoding


def clean_text(text: str) -> str:
    """Normalise text from any loader: ``\\n`` newlines, no control characters, NFC.

    Args:
        text: Decoded text, possibly with ``\\r\\n`` newlines, NULs or other control characters.

    Returns:
        The text with every newline form turned into ``\\n``, control characters other than
        ``\\n`` and ``\\t`` dropped, and composed to Unicode NFC (so that ``"é"`` typed two ways
        embeds and matches as one string).
    """
    text = _NEWLINES.sub("\n", text)
    text = _CONTROLS.sub("", text)
    return unicodedata.normalize("NFC", text)


def _decode(data: bytes, path: str) -> tuple[str, str]:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _strict(data[len(bom) :], encoding, path), encoding

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    nuls = data.count(0)
    if text is not None and nuls <= len(data) * _MAX_STRAY_NUL_RATIO:
        # A few stray NULs in UTF-8 (a log written by a crashing process) are dropped by
        # clean_text rather than costing the whole file.
        return text, "utf-8"
    if text is not None and nuls < len(data) * _MIN_WIDE_ASCII_NUL_RATIO:
        # Valid UTF-8 with many NULs: UTF-16/32 text that is also valid UTF-8 is mostly ASCII,
        # so it would have far more; short CJK-looking "UTF-16" readings of it are noise.
        raise LoaderError(path, "binary or undecodable content (NUL bytes)")
    if nuls:
        return _decode_wide_without_bom(data, path)
    if text is not None:
        return text, "utf-8"
    return _detect_legacy(data, path)


def _detect_legacy(data: bytes, path: str) -> tuple[str, str]:
    # Imported here: charset-normalizer is only needed for the rare non-UTF-8 file.
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise LoaderError(path, "binary or undecodable content (no text encoding fits)")
    detected = codecs.lookup(best.encoding).name.replace("-", "_")
    detected = _SUPERSETS.get(detected, detected)
    if detected.startswith("utf") or detected in _MULTIBYTE_FAMILIES:
        encoding = _rerank_cjk(data, detected)
    else:
        encoding = _prefer_cp1252(data, detected, best.chaos)
    name = codecs.lookup(encoding).name
    logger.debug("%s: detected encoding %s (charset-normalizer said %s)", path, name, best.encoding)
    return _strict(data, name, path), name


def _prefer_cp1252(data: bytes, detected: str, chaos: float) -> str:
    """Return cp1252 when it reads the bytes as cleanly as the single-byte code page detected."""
    from charset_normalizer.md import mess_ratio

    try:
        western = data.decode("cp1252")
    except UnicodeDecodeError:
        return detected
    return "cp1252" if mess_ratio(western, 1.0) <= chaos + _WESTERN_TIE_TOLERANCE else detected


def _rerank_cjk(data: bytes, detected: str) -> str:
    """Second opinion on a CJK or BOM-less UTF-16 guess, by how common the decoded characters are.

    On a sentence or two, charset-normalizer's statistics have too little to go on and it
    confuses GBK, Big5, Shift-JIS, EUC-KR and UTF-16 with one another. Each of these legacy
    standards puts its most frequent characters in a known block (GB2312 level-1 hanzi, Big5
    common characters, JIS level-1 kanji and kana, the 2,350 KS X 1001 hangul), and a wrong
    decoding scatters outside it. The detector's guess is kept unless another encoding reads
    strictly more of the text as common characters; among those, the earlier one below wins.
    """
    best, best_share = detected, _common_share(data, detected)
    for candidate in _COMMON_BLOCKS:
        share = _common_share(data, candidate)
        if share > best_share:
            best, best_share = candidate, share
    return best


def _common_share(data: bytes, encoding: str) -> float:
    blocks = _COMMON_BLOCKS.get(_BLOCK_ALIASES.get(encoding, encoding))
    if blocks is None:
        return 0.0
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return -1.0
    wide = [ch for ch in text if ord(ch) > 0x7F][:_COMMON_SAMPLE_CHARS]
    if not wide:
        return 0.0
    common = 0
    for ch in wide:
        encoded = ch.encode(encoding)
        code = int.from_bytes(encoded, "big")
        common += len(encoded) == 2 and any(lo <= code <= hi for lo, hi in blocks)
    return common / len(wide)


def _decode_wide_without_bom(data: bytes, path: str) -> tuple[str, str]:
    """Decode NUL-holding bytes as the UTF-16/32 byte order that reads most like text.

    The zero bytes alone cannot tell the byte order: Chinese text puts them on either side
    (U+4E00 is ``00 4E`` in UTF-16-LE, ``\\n`` is ``0A 00``), so each candidate that decodes
    strictly is scored with charset-normalizer's mess ratio and the cleanest one wins.
    """
    from charset_normalizer.md import mess_ratio

    scored: list[tuple[float, str, str]] = []
    for encoding, unit in _WIDE_ENCODINGS:
        if len(data) % unit:
            continue
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        scored.append((mess_ratio(text[:_MESS_SAMPLE_CHARS], 1.0), encoding, text))
    if scored:
        mess, encoding, text = min(scored, key=lambda item: item[0])
        if mess <= _MAX_MESS:
            return text, encoding
    raise LoaderError(path, "binary or undecodable content (NUL bytes)")


def _strict(data: bytes, encoding: str, path: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise LoaderError(
            path, f"binary or undecodable content (not valid {encoding} at byte {exc.start})"
        ) from exc
