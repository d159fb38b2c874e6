"""Check an uploaded object's leading bytes against its declared content type."""

from __future__ import annotations

import codecs
from collections.abc import Callable

from app.mediatypes import essence, is_json, is_token_essence

SNIFF_BYTES = 4096

_Check = Callable[[bytes, bool], bool]


def _png(head: bytes, complete: bool) -> bool:
    # PNG spec §5.2 signature, then §5.6: IHDR must be the first chunk (length 13).
    return head[:16] == b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"


def _jpeg(head: bytes, complete: bool) -> bool:
    # SOI marker (FF D8) immediately followed by the next marker's FF (ITU-T T.81 §B.1.1.3).
    return head[:3] == b"\xff\xd8\xff"


def _gif(head: bytes, complete: bool) -> bool:
    return head[:6] in (b"GIF87a", b"GIF89a")


def _webp(head: bytes, complete: bool) -> bool:
    # A RIFF container (4-byte little-endian size in between) whose form type is WEBP.
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _bmp(head: bytes, complete: bool) -> bool:
    return head[:2] == b"BM"


def _tiff(head: bytes, complete: bool) -> bool:
    # TIFF 6.0 §2 byte-order mark and 42; BigTIFF uses 43.
    return head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _pdf(head: bytes, complete: bool) -> bool:
    # ISO 32000 puts "%PDF-" at offset 0, but Acrobat accepts it anywhere in the first 1024
    # bytes (PDF Reference 1.7, Appendix H, note 13), and real files rely on that.
    return b"%PDF-" in head[:1024]


def _zip(head: bytes, complete: bool) -> bool:
    # APPNOTE.TXT §4.3.7 local file header, or §4.3.16 end of central directory, which is all
    # an archive without entries holds.
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def _gzip(head: bytes, complete: bool) -> bool:
    # RFC 1952 §2.3.1: ID1 ID2, then CM, where 8 (deflate) is the only method defined.
    return head[:3] == b"\x1f\x8b\x08"


def _iso_bmff(head: bytes, complete: bool) -> bool:
    # ISO/IEC 14496-12 §4.3: the ftyp box comes first, so its type sits after the size field.
    return head[4:8] == b"ftyp"


# Pre-ISO QuickTime files may begin with any top-level atom instead of ftyp.
_QUICKTIME_LEADING_ATOMS = frozenset(
    {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"}
)


def _quicktime(head: bytes, complete: bool) -> bool:
    return head[4:8] in _QUICKTIME_LEADING_ATOMS


def _decode_text(head: bytes, complete: bool, *, allow_utf16: bool) -> str | None:
    # A multi-byte character cut at the end of a partial head is not an error, so decode
    # incrementally and only flush when the head is the whole object.
    if head.startswith(codecs.BOM_UTF8):
        encoding, body = "utf-8", head[len(codecs.BOM_UTF8) :]
    elif allow_utf16 and head.startswith(codecs.BOM_UTF16_LE):
        encoding, body = "utf-16-le", head[len(codecs.BOM_UTF16_LE) :]
    elif allow_utf16 and head.startswith(codecs.BOM_UTF16_BE):
        encoding, body = "utf-16-be", head[len(codecs.BOM_UTF16_BE) :]
    else:
        encoding, body = "utf-8", head
    try:
        text = codecs.getincrementaldecoder(encoding)("strict").decode(body, final=complete)
    except UnicodeDecodeError:
        return None
    # NUL never appears in text files; it is the cheapest tell of a binary (or UTF-32) file.
    return None if "\x00" in text else text


# C0 controls that real text files do not contain (TAB, LF, VT, FF, CR, SUB and ESC may
# appear); the same rule file(1) and git use to tell text from binary.
_BINARY_CONTROLS = bytes([*range(0x00, 0x09), *range(0x0E, 0x1A), *range(0x1C, 0x20)])
_BINARY_CONTROL_CHARS = frozenset(_BINARY_CONTROLS.decode("ascii"))


def _text(head: bytes, complete: bool) -> bool:
    text = _decode_text(head, complete, allow_utf16=True)
    if text is not None:
        return _BINARY_CONTROL_CHARS.isdisjoint(text)
    # Not Unicode: still text in a legacy 8-bit encoding (Excel's CSV export is Windows-1252),
    # as long as it holds none of the control bytes that mark binary data.
    return not any(byte in _BINARY_CONTROLS for byte in head)


# RFC 8259 §2: the only insignificant whitespace, and the characters a value can start with.
_JSON_WHITESPACE = " \t\n\r"
_JSON_VALUE_START = frozenset('{["-0123456789tfn')


def _json(head: bytes, complete: bool) -> bool:
    # RFC 8259 §8.1 requires UTF-8 between systems and lets parsers skip a BOM; no UTF-16.
    text = _decode_text(head, complete, allow_utf16=False)
    if text is None:
        return False
    stripped = text.lstrip(_JSON_WHITESPACE)
    if not stripped:
        return not complete  # nothing but whitespace so far: only a partial head may be fine
    return stripped[0] in _JSON_VALUE_START


_PNG = (_png, "a PNG")
_JPEG = (_jpeg, "a JPEG")
_ZIP = (_zip, "a ZIP archive")
_MP4 = (_iso_bmff, "an ISO media (MP4) file")
_TEXT = (_text, "text")

_CHECKS: dict[str, tuple[_Check, str]] = {
    "image/png": _PNG,
    "image/apng": _PNG,
    "image/jpeg": _JPEG,
    "image/pjpeg": _JPEG,
    "image/gif": (_gif, "a GIF"),
    "image/webp": (_webp, "a WebP image"),
    "image/bmp": (_bmp, "a BMP image"),
    "image/x-ms-bmp": (_bmp, "a BMP image"),
    "image/tiff": (_tiff, "a TIFF image"),
    "application/pdf": (_pdf, "a PDF"),
    "application/zip": _ZIP,
    "application/x-zip-compressed": _ZIP,
    "application/epub+zip": _ZIP,
    "application/java-archive": _ZIP,
    "application/vnd.android.package-archive": _ZIP,
    "application/gzip": (_gzip, "gzip data"),
    "application/x-gzip": (_gzip, "gzip data"),
    "video/mp4": _MP4,
    "audio/mp4": _MP4,
    "audio/x-m4a": _MP4,
    "video/3gpp": _MP4,
    "video/3gpp2": _MP4,
    "image/heic": _MP4,
    "image/heif": _MP4,
    "image/heic-sequence": _MP4,
    "image/heif-sequence": _MP4,
    "image/avif": _MP4,
    "video/quicktime": (_quicktime, "a QuickTime movie"),
    # Plain-text formats only: text that a browser could run (HTML, XML, JavaScript) is off the
    # inline allow-list and downloads as an attachment.
    "text/plain": _TEXT,
    "text/csv": _TEXT,
    "text/tab-separated-values": _TEXT,
    "text/markdown": _TEXT,
    "application/json": (_json, "JSON"),
}

# Families whose every member is a ZIP package: Office Open XML (ECMA-376 Part 2) and
# OpenDocument (ODF 1.2 Part 3).
_ZIP_FAMILY_PREFIXES = (
    "application/vnd.openxmlformats-officedocument.",
    "application/vnd.oasis.opendocument.",
)


def _check_for(declared: str) -> tuple[_Check, str] | None:
    if declared in _CHECKS:
        return _CHECKS[declared]
    if declared.startswith(_ZIP_FAMILY_PREFIXES):
        return _ZIP
    # RFC 6839 §3.1 structured syntax suffix: the payload is JSON whatever the prefix.
    if is_json(declared):
        return (_json, "JSON")
    return None


def check_magic(content_type: str, head: bytes, size: int) -> str | None:
    """Return None if `head` fits the declared type (or it is not sniffed), else a reason."""
    declared = essence(content_type)
    if not is_token_essence(declared):  # anything else is not sniffed
        return None
    check = _check_for(declared)
    if check is None:
        return None
    matches, label = check
    complete = len(head) >= size
    if matches(head, complete):
        return None
    # The essence is echoed only after the token check above, so it cannot smuggle anything.
    return f"declared {declared} but the bytes are not {label}"
