"""Leading-byte checks of uploaded objects against their declared content type."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib

import pytest

from app.sniff import SNIFF_BYTES, check_magic

# --- real (minimal) files -------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def make_png() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    idat = zlib.compress(b"\x00\xff\x00\x00")  # filter byte + one red pixel
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def make_bmp() -> bytes:
    pixels = b"\x00\x00\xff\x00"  # one BGR pixel, row padded to 4 bytes
    info = struct.pack("<IiiHHIIiiII", 40, 1, 1, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    header = struct.pack("<2sIHHI", b"BM", 14 + len(info) + len(pixels), 0, 0, 14 + len(info))
    return header + info + pixels


def make_tiff(big_endian: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    mark = b"MM" if big_endian else b"II"
    entries = [(256, 3, 1, 1), (257, 3, 1, 1), (259, 3, 1, 1), (262, 3, 1, 1)]
    ifd = struct.pack(order + "H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack(order + "HHIHH", tag, kind, count, value, 0)
    ifd += struct.pack(order + "I", 0)
    return mark + struct.pack(order + "HI", 42, 8) + ifd


def make_zip(entries: dict[str, bytes], *, stored_first: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, (name, data) in enumerate(entries.items()):
            method = zipfile.ZIP_STORED if stored_first and index == 0 else zipfile.ZIP_DEFLATED
            archive.writestr(name, data, compress_type=method)
    return buffer.getvalue()


def make_box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def make_ftyp(major: bytes, *compatible: bytes) -> bytes:
    return make_box(b"ftyp", major + b"\x00\x00\x00\x00" + b"".join(compatible))


PNG = make_png()
JPEG = (
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    b"\xff\xdb\x00\x43\x00" + bytes(64) + b"\xff\xd9"
)
JPEG_EXIF = b"\xff\xd8\xff\xe1\x00\x16Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\xff\xd9"
GIF89 = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
GIF87 = b"GIF87a" + GIF89[6:]
_VP8L = b"\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"
_WEBP_CHUNK = b"VP8L" + struct.pack("<I", len(_VP8L)) + _VP8L
WEBP = b"RIFF" + struct.pack("<I", 4 + len(_WEBP_CHUNK)) + b"WEBP" + _WEBP_CHUNK
BMP = make_bmp()
TIFF_LE = make_tiff()
TIFF_BE = make_tiff(big_endian=True)
PDF = (
    b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
PDF_AFTER_JUNK = b"\x00" * 1000 + PDF  # header at offset 1000: Acrobat accepts it
PDF_TOO_LATE = b" " * 1024 + PDF
ZIP = make_zip({"hello.txt": b"hello world\n"})
EMPTY_ZIP = make_zip({})
DOCX = make_zip(
    {"[Content_Types].xml": b"<?xml version='1.0'?><Types/>", "word/document.xml": b"<w/>"}
)
ODT = make_zip(
    {"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"},
    stored_first=True,
)
EPUB = make_zip(
    {"mimetype": b"application/epub+zip", "META-INF/container.xml": b"<c/>"}, stored_first=True
)
JAR = make_zip({"META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\n"})
GZIP = gzip.compress(b"hello world\n" * 10)
MP4 = (
    make_ftyp(b"isom", b"isom", b"iso2", b"mp41") + make_box(b"moov", b"") + make_box(b"mdat", b"")
)
M4A = make_ftyp(b"M4A ", b"M4A ", b"mp42", b"isom") + make_box(b"mdat", b"")
HEIC = make_ftyp(b"heic", b"mif1", b"heic") + make_box(b"meta", b"")
AVIF = make_ftyp(b"avif", b"avif", b"mif1", b"miaf") + make_box(b"meta", b"")
MOV_FTYP = make_ftyp(b"qt  ", b"qt  ") + make_box(b"moov", b"")
MOV_WIDE_FIRST = make_box(b"wide", b"") + make_box(b"mdat", b"\x00" * 16)
MOV_MOOV_FIRST = make_box(b"moov", make_box(b"mvhd", b"\x00" * 100))
HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("image/png", PNG),
        ("image/jpeg", JPEG),
        ("image/jpeg", JPEG_EXIF),
        ("image/gif", GIF89),
        ("image/gif", GIF87),
        ("image/webp", WEBP),
        ("image/bmp", BMP),
        ("image/tiff", TIFF_LE),
        ("image/tiff", TIFF_BE),
        ("application/pdf", PDF),
        ("application/pdf", PDF_AFTER_JUNK),
        ("application/zip", ZIP),
        ("application/zip", EMPTY_ZIP),
        ("application/x-zip-compressed", ZIP),
        ("application/epub+zip", EPUB),
        ("application/java-archive", JAR),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", DOCX),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", DOCX),
        ("application/vnd.openxmlformats-officedocument.presentationml.presentation", DOCX),
        ("application/vnd.oasis.opendocument.text", ODT),
        ("application/vnd.oasis.opendocument.spreadsheet", ODT),
        ("application/gzip", GZIP),
        ("application/x-gzip", GZIP),
        ("video/mp4", MP4),
        ("audio/mp4", M4A),
        ("image/heic", HEIC),
        ("image/heif", HEIC),
        ("image/avif", AVIF),
        ("video/quicktime", MOV_FTYP),
        ("video/quicktime", MOV_WIDE_FIRST),
        ("video/quicktime", MOV_MOOV_FIRST),
    ],
)
def test_check_magic_accepts_real_binary_headers(content_type: str, data: bytes) -> None:
    assert check_magic(content_type, data[:SNIFF_BYTES], len(data)) is None


def test_check_magic_only_needs_the_head_of_a_large_file() -> None:
    data = make_zip({f"f{i}.bin": bytes(range(256)) * 64 for i in range(20)})
    assert len(data) > SNIFF_BYTES
    assert check_magic("application/zip", data[:SNIFF_BYTES], len(data)) is None


def test_sniff_window_covers_the_pdf_header_allowance() -> None:
    assert SNIFF_BYTES >= 1024


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        pytest.param("image/jpeg", PNG, id="png-as-jpeg"),
        pytest.param("image/png", HTML, id="html-as-png"),
        pytest.param("image/png", JPEG, id="jpeg-as-png"),
        pytest.param("image/png", PNG[:8] + b"\x00\x00\x00\x0dIDAT", id="png-without-ihdr-first"),
        pytest.param("image/gif", b"GIF88a" + GIF89[6:], id="bad-gif-version"),
        pytest.param("image/webp", b"RIFF\x24\x00\x00\x00WAVEfmt ", id="wav-as-webp"),
        pytest.param("image/bmp", PNG, id="png-as-bmp"),
        pytest.param("image/tiff", b"II\x2a", id="truncated-tiff"),
        pytest.param("application/zip", PDF, id="pdf-as-zip"),
        pytest.param("application/pdf", ZIP, id="zip-as-pdf"),
        pytest.param("application/pdf", PDF_TOO_LATE, id="pdf-header-after-1024"),
        pytest.param("application/pdf", HTML, id="html-as-pdf"),
        pytest.param(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504),
            id="legacy-ole-doc-as-docx",
        ),
        pytest.param("application/epub+zip", PDF, id="pdf-as-epub"),
        pytest.param("application/gzip", ZIP, id="zip-as-gzip"),
        pytest.param("application/gzip", b"\x1f\x8b\x07" + bytes(7), id="gzip-unknown-method"),
        pytest.param("video/mp4", HTML, id="html-as-mp4"),
        pytest.param("video/mp4", MOV_WIDE_FIRST, id="quicktime-atoms-not-accepted-as-mp4"),
        pytest.param("image/heic", PNG, id="png-as-heic"),
        pytest.param("image/avif", JPEG, id="jpeg-as-avif"),
        pytest.param("video/quicktime", GZIP, id="gzip-as-quicktime"),
    ],
)
def test_check_magic_rejects_mismatched_binary(content_type: str, data: bytes) -> None:
    reason = check_magic(content_type, data[:SNIFF_BYTES], len(data))
    assert reason is not None
    assert reason.startswith(f"declared {content_type} but the bytes are not ")


@pytest.mark.parametrize(
    "content_type",
    [
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/bmp",
        "image/tiff",
        "application/pdf",
        "application/zip",
        "application/epub+zip",
        "application/gzip",
        "video/mp4",
        "video/quicktime",
        "application/json",
    ],
)
def test_check_magic_rejects_empty_object_for_formats_with_a_header(content_type: str) -> None:
    assert check_magic(content_type, b"", 0) is not None


def test_check_magic_reason_is_short_and_never_contains_the_bytes() -> None:
    head = b"SECRET-BYTES <html>" * 10
    reason = check_magic("image/png", head, len(head))
    assert reason == "declared image/png but the bytes are not a PNG"
    for content_type in ["text/plain", "application/json", "application/zip"]:
        reason = check_magic(content_type, b"\x00SECRET-BYTES\xff", 15)
        assert reason is not None
        assert "SECRET" not in reason
        assert len(reason) < 120


@pytest.mark.parametrize(
    "content_type",
    ["IMAGE/PNG", "image/png; charset=binary", " Image/Png ;x=y", "image/png;"],
)
def test_check_magic_ignores_case_and_parameters(content_type: str) -> None:
    assert check_magic(content_type, PNG, len(PNG)) is None
    assert check_magic(content_type, JPEG, len(JPEG)) == (
        "declared image/png but the bytes are not a PNG"
    )


@pytest.mark.parametrize(
    "content_type",
    [
        "application/octet-stream",
        "audio/mpeg",
        "audio/ogg",
        "video/webm",
        "application/x-made-up",
        "text/html",  # served as an attachment instead, see app.filenames
        "image/svg+xml",
        "",
        "not a type",
        "image/png\r\nX: y",
    ],
)
def test_check_magic_passes_types_it_does_not_sniff(content_type: str) -> None:
    assert check_magic(content_type, b"\x00\x01garbage\xff", 11) is None
    assert check_magic(content_type, b"", 0) is None


# --- text types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/plain", b"hello world\n"),
        ("text/plain", "Résumé \u2013 履歴書 😀\n".encode()),
        ("text/plain", b"\xef\xbb\xbfwith a UTF-8 BOM\n"),
        ("text/plain", "\ufeffUTF-16 LE 😀\r\n".encode("utf-16-le")),
        ("text/plain", "\ufeffUTF-16 BE 😀\r\n".encode("utf-16-be")),
        ("text/plain; charset=utf-8", b"tab\tand\r\nCRLF\x0c"),
        ("text/plain", b""),
        ("text/csv", "name,city\nZoë,Zürich\n".encode()),
        ("text/csv", b"\xef\xbb\xbfa,b\r\n1,2\r\n"),
        ("text/markdown", "# Title\n\n* item — ok\n".encode()),
        ("text/tab-separated-values", b"a\tb\n"),
    ],
)
def test_check_magic_accepts_text(content_type: str, data: bytes) -> None:
    assert check_magic(content_type, data, len(data)) is None


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        pytest.param("text/plain", "café".encode("latin-1"), id="latin-1"),
        pytest.param("text/csv", "Zoë,Zürich\r\n".encode("cp1252"), id="excel-cp1252-csv"),
        pytest.param("text/plain", b"\xc0\xaf", id="invalid-utf8-but-8-bit-text"),
    ],
)
def test_check_magic_accepts_legacy_8_bit_text(content_type: str, data: bytes) -> None:
    assert check_magic(content_type, data, len(data)) is None


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        pytest.param("text/plain", b"abc\x00def", id="nul-byte"),
        pytest.param("text/plain", PNG, id="png-as-text"),
        pytest.param("text/plain", GZIP, id="gzip-as-text"),
        pytest.param("text/plain", b"abc\x01\x02def", id="c0-controls"),
        pytest.param("text/csv", b"\x7fELF\x02\x01\x01\x00", id="elf-as-csv"),
        pytest.param("text/plain", "no BOM".encode("utf-16-le"), id="utf-16-without-bom"),
        pytest.param("text/plain", "\ufeffx".encode("utf-32-le"), id="utf-32"),
        pytest.param("text/markdown", b"\xff\xfe\x00\xd8", id="utf-16-lone-surrogate"),
        pytest.param("text/plain", b"\xff\xfeA\x00B", id="utf-16-odd-length"),
    ],
)
def test_check_magic_rejects_non_text(content_type: str, data: bytes) -> None:
    reason = check_magic(content_type, data, len(data))
    assert reason is not None
    assert "text" in reason


@pytest.mark.parametrize(
    "cut_char",
    ["é", "€", "😀"],
)
def test_truncated_utf8_at_head_boundary_depends_on_whether_more_follows(cut_char: str) -> None:
    encoded = cut_char.encode()
    head = b"a" * (SNIFF_BYTES - 1) + encoded[:1]
    assert len(head) == SNIFF_BYTES
    assert check_magic("text/plain", head, SNIFF_BYTES + len(encoded) - 1) is None
    assert check_magic("application/json", b"[" + head[1:], SNIFF_BYTES + 100) is None
    # The whole object ends mid-character: not UTF-8, so not JSON (plain text may be 8-bit).
    assert check_magic("application/json", b"[" + head[1:], len(head)) is not None


@pytest.mark.parametrize("cut", [1, 2, 3], ids=["mid-high-unit", "between-units", "mid-low-unit"])
def test_truncated_utf16_at_head_boundary_depends_on_whether_more_follows(cut: int) -> None:
    prefix = "\ufeff".encode("utf-16-le") + "a".encode("utf-16-le") * 100
    head = prefix + "😀".encode("utf-16-le")[:cut]
    assert check_magic("text/plain", head, SNIFF_BYTES + 10) is None
    assert check_magic("text/plain", head, len(head)) is not None


def test_invalid_utf8_inside_a_partial_head_is_still_rejected_for_json() -> None:
    head = b"[\xff" + b"1" * (SNIFF_BYTES - 2)
    assert check_magic("application/json", head, 10 * SNIFF_BYTES) is not None


def test_control_bytes_inside_a_partial_head_are_rejected_for_text() -> None:
    head = b"a" * (SNIFF_BYTES - 1) + b"\x02"
    assert check_magic("text/plain", head, 10 * SNIFF_BYTES) is not None


# --- JSON -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1}',
        b"[1, 2]",
        b'"string"',
        b"-1.5",
        b"0",
        b"42",
        b"true",
        b"false",
        b"null",
        b" \t\r\n {}",
        b'\xef\xbb\xbf{"bom": true}',
        '{"name": "Zoë 😀"}'.encode(),
    ],
)
def test_check_magic_accepts_json(data: bytes) -> None:
    assert check_magic("application/json", data, len(data)) is None
    assert check_magic("application/json; charset=utf-8", data, len(data)) is None
    assert check_magic("application/ld+json", data, len(data)) is None


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"<html></html>", id="html"),
        pytest.param(b"'single'", id="single-quotes"),
        pytest.param(b"hello", id="bare-word"),
        pytest.param(b"+1", id="plus"),
        pytest.param(b".5", id="leading-dot"),
        pytest.param(b"", id="empty"),
        pytest.param(b"   \n", id="only-whitespace"),
        pytest.param(b"\x0b{}", id="vertical-tab-is-not-json-whitespace"),
        pytest.param(b'{"a":"\x00"}', id="nul"),
        pytest.param('{"café": 1}'.encode("latin-1"), id="latin-1"),
        pytest.param("\ufeff{}".encode("utf-16-le"), id="utf-16"),
        pytest.param(PNG, id="png"),
    ],
)
def test_check_magic_rejects_non_json(data: bytes) -> None:
    assert check_magic("application/json", data, len(data)) == (
        "declared application/json but the bytes are not JSON"
    )


def test_json_whitespace_only_head_is_accepted_while_more_follows() -> None:
    head = b" " * SNIFF_BYTES
    assert check_magic("application/json", head, SNIFF_BYTES + 2) is None
    assert check_magic("application/json", head, SNIFF_BYTES) is not None
