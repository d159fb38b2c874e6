"""Filename validation, Content-Disposition building and download header hardening."""

from __future__ import annotations

import random
import re
import unicodedata
import urllib.parse
from typing import Literal

import pytest

from app.filenames import (
    DEFAULT_IGNORABLE_RANGES,
    INLINE_TYPES,
    content_disposition,
    download_headers,
    normalize_filename,
)

# --- a small RFC 6266 / RFC 8187 parser, strict enough to catch any injection ----------------

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED_STRING = r'"(?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*"'
_PARAM = re.compile(rf"\s*;\s*({_TOKEN})\s*=\s*({_TOKEN}|{_QUOTED_STRING})")
_EXT_VALUE = re.compile(
    r"([A-Za-z0-9!#$%&+^_`{}~-]+)'([A-Za-z0-9-]*)'((?:%[0-9A-F]{2}|[A-Za-z0-9!#$&+.^_`|~-])*)"
)


def parse_content_disposition(value: str) -> tuple[str, dict[str, str]]:
    """Split a header value into its type and parameters, failing on anything irregular."""
    assert value.isascii()
    assert not any(ch in value for ch in "\r\n\x00")
    head = re.match(_TOKEN, value)
    assert head is not None
    params: dict[str, str] = {}
    pos = head.end()
    while pos < len(value):
        match = _PARAM.match(value, pos)
        assert match is not None, f"unparseable parameter at {pos}: {value!r}"
        name, raw = match.group(1).lower(), match.group(2)
        assert name not in params, f"duplicate parameter {name}"
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[name] = raw
        pos = match.end()
    return head.group(0).lower(), params


def decode_ext_value(value: str) -> str:
    match = _EXT_VALUE.fullmatch(value)
    assert match is not None, f"not an RFC 8187 ext-value: {value!r}"
    assert match.group(1).upper() == "UTF-8"
    return urllib.parse.unquote(match.group(3), encoding="utf-8", errors="strict")


def assert_well_formed(value: str, disposition: str = "attachment") -> dict[str, str]:
    kind, params = parse_content_disposition(value)
    assert kind == disposition
    assert set(params) == {"filename", "filename*"}
    assert value.startswith(f'{disposition}; filename="')
    fallback = params["filename"]
    assert fallback
    assert all(" " <= ch <= "~" and ch not in '"\\;%,' for ch in fallback)
    decode_ext_value(params["filename*"])  # must at least decode
    return params


# --- normalize_filename ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Résumé 2026.pdf",
        "a",
        "name with  spaces .txt",
        " leading and trailing ",
        "photo 📷 🎉.jpg",
        "日本語のファイル.docx",
        "..hidden",
        "...",
        ".bashrc",
        "a" * 255,
        "é" * 127 + "a",  # 255 bytes, two per character
        "😀" * 63 + "abc",  # 255 bytes, four per character
        # Emoji keep their joiners and presentation selectors.
        "\U0001f468\u200d\U0001f469\u200d\U0001f467.png",  # family: ZWJ sequence
        "\u2764\ufe0f.txt",  # red heart with VS16
        "\U0001f3f3\ufe0f\u200d\U0001f308 flag.png",  # VS16 then ZWJ
        "\U0001f469\U0001f3fd\u200d\U0001f4bb.txt",  # skin tone then ZWJ
        "1\ufe0f\u20e3 first.txt",  # keycap
    ],
)
def test_normalize_filename_accepts_ordinary_names(name: str) -> None:
    assert normalize_filename(name) == name


def test_normalize_filename_composes_to_nfc() -> None:
    assert normalize_filename("e\u0301") == "é"
    assert normalize_filename("Re\u0301sume\u0301.pdf") == "Résumé.pdf"


def test_normalize_filename_measures_bytes_after_nfc() -> None:
    # 128 decomposed "é" are 384 bytes as given but 256 once composed: still too long.
    with pytest.raises(ValueError, match="255"):
        normalize_filename("e\u0301" * 128)
    # 85 decomposed "é" are 255 bytes as given and 170 once composed.
    assert normalize_filename("e\u0301" * 85) == "é" * 85


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("a" * 256, id="256-ascii-bytes"),
        pytest.param("é" * 128, id="256-bytes-multibyte"),
        pytest.param("😀" * 64, id="256-bytes-emoji"),
        pytest.param("abc\u202etxt.exe", id="rlo-bidi-override"),
        pytest.param("a\u202ab", id="lre"),
        pytest.param("a\u2066b", id="lri-isolate"),
        pytest.param("a\u2069b", id="pdi"),
        pytest.param("a\u200eb", id="lrm"),
        pytest.param("a\u061cb", id="arabic-letter-mark"),
        pytest.param("a\u200bb", id="zero-width-space"),
        pytest.param("a\u200db", id="zero-width-joiner"),
        pytest.param("a\u2060b", id="word-joiner"),
        pytest.param("\ufeffa.txt", id="bom"),
        pytest.param("a\u00adb", id="soft-hyphen"),
        pytest.param("a\rb", id="cr"),
        pytest.param("a\nb", id="lf"),
        pytest.param("a\tb", id="tab"),
        pytest.param("a\x00b", id="nul"),
        pytest.param("a\x7fb", id="del"),
        pytest.param("a\x85b", id="c1-nel"),
        pytest.param("a\u2028b", id="line-separator"),
        pytest.param("a\u2029b", id="paragraph-separator"),
        pytest.param("\ud800", id="lone-high-surrogate"),
        pytest.param("a\udfffb", id="lone-low-surrogate"),
        pytest.param("a/b", id="slash"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("/", id="only-slash"),
        pytest.param(".", id="dot"),
        pytest.param("..", id="dotdot"),
        pytest.param("   ", id="spaces"),
        pytest.param("\u3000\u00a0", id="unicode-spaces"),
        # Default_Ignorable code points that are letters or marks, not format characters.
        pytest.param("\u3164.pdf", id="hangul-filler"),
        pytest.param("a\u115fb.txt", id="hangul-choseong-filler"),
        pytest.param("a\u1160b", id="hangul-jungseong-filler"),
        pytest.param("a\uffa0b", id="halfwidth-hangul-filler"),
        pytest.param("a\u034fb", id="combining-grapheme-joiner"),
        pytest.param("a\u17b4b", id="khmer-inherent-vowel"),
        pytest.param("a\u180bb", id="mongolian-variation-selector"),
        pytest.param("a\ufe00b", id="variation-selector-1"),
        pytest.param("a\U000e0100b", id="variation-selector-17"),
        pytest.param("a\U000e0041b", id="tag-character"),
        # ZWJ and VS16 outside emoji hide in the name like any other invisible character.
        pytest.param("a\ufe0fb", id="vs16-after-a-letter"),
        pytest.param("\ufe0f.txt", id="vs16-first"),
        pytest.param("\u2764\ufe0f\ufe0f.txt", id="vs16-twice"),
        pytest.param("1\ufe0f.txt", id="vs16-after-a-digit-without-keycap"),
        pytest.param("\u200d\U0001f600.txt", id="zwj-first"),
        pytest.param("\U0001f600\u200d.txt", id="zwj-before-a-letter"),
        pytest.param("\U0001f600\u200d\u200d\U0001f600", id="zwj-twice"),
        pytest.param("a\u200d\U0001f600", id="zwj-after-a-letter"),
    ],
)
def test_normalize_filename_rejects_with_value_error(name: str) -> None:
    with pytest.raises(ValueError, match=r"^filename ") as excinfo:
        normalize_filename(name)
    assert type(excinfo.value) is ValueError  # not UnicodeEncodeError, a subclass


def _default_ignorable(code_point: int) -> bool:
    return any(lo <= code_point <= hi for lo, hi in DEFAULT_IGNORABLE_RANGES)


# Members and neighbours, from DerivedCoreProperties.txt (Unicode 14.0).
IGNORABLE = """00AD 034F 061C 115F 1160 17B4 17B5 180B 180E 180F 200B 200D 200F 202A 202E 2060
    2065 206F 3164 FE00 FE0F FEFF FFA0 FFF0 FFF8 1BCA0 1BCA3 1D173 1D17A E0000 E0001 E007F
    E0100 E01EF E0FFF"""
NOT_IGNORABLE = """00AC 00AE 034E 0350 115E 1161 17B3 17B6 180A 1810 200A 2010 2029 202F 205F
    2070 20E3 3163 3165 FDFF FE10 FEFE FF9F FFA1 FFF9 1BCA4 1D172 1D17B DFFFF E1000"""
# The format characters (Cf) that UAX #44 leaves out of Default_Ignorable_Code_Point.
VISIBLE_FORMAT = """0600 0601 0602 0603 0604 0605 06DD 070F 0890 0891 08E2 FFF9 FFFA FFFB 110BD
    110CD 13430 13431 13432 13433 13434 13435 13436 13437 13438"""


def _code_points(listing: str) -> list[int]:
    return [int(word, 16) for word in listing.split()]


def test_default_ignorable_table_spot_checks_against_unicode() -> None:
    for member in _code_points(IGNORABLE):
        assert _default_ignorable(member), hex(member)
    for outsider in _code_points(NOT_IGNORABLE):
        assert not _default_ignorable(outsider), hex(outsider)
    # The property is derived from Cf (less the visible ones) plus a few letters and marks, so
    # every other Cf this interpreter knows must be in the table.
    visible = set(_code_points(VISIBLE_FORMAT))
    for code_point in range(0x110000):
        if unicodedata.category(chr(code_point)) == "Cf" and code_point not in visible:
            assert _default_ignorable(code_point), hex(code_point)
    assert sum(hi - lo + 1 for lo, hi in DEFAULT_IGNORABLE_RANGES) == 4174  # the file's total


def test_normalize_filename_error_does_not_echo_input() -> None:
    for bad in ["SECRET-MARKER\u202e.exe", "SECRET-MARKER/x", "SECRET-MARKER" * 30]:
        with pytest.raises(ValueError, match=r"^filename ") as excinfo:
            normalize_filename(bad)
        assert "SECRET-MARKER" not in str(excinfo.value)


# --- content_disposition --------------------------------------------------------------------


def test_content_disposition_matches_contract_example() -> None:
    assert content_disposition("Résumé 2026.pdf", "attachment") == (
        "attachment; filename=\"Resume 2026.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%202026.pdf"
    )


def test_content_disposition_inline() -> None:
    assert (
        content_disposition("a.png", "inline")
        == "inline; filename=\"a.png\"; filename*=UTF-8''a.png"
    )


def test_content_disposition_rejects_unknown_disposition() -> None:
    with pytest.raises(ValueError, match="disposition"):
        content_disposition("a.txt", "attachment\r\nX-Evil: 1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "fallback"),
    [
        ("plain.txt", "plain.txt"),
        ("données.csv", "donnees.csv"),
        ("ﬁle.txt", "file.txt"),  # NFKD splits the ligature
        ("日本語.pdf", "download.pdf"),
        ("日本語", "download"),
        ("報告 Q3.xlsx", "__ Q3.xlsx"),
        ("😀", "download"),
        ("...", "download"),
        (".bashrc", ".bashrc"),
        ("archive.tar.gz", "archive.tar.gz"),
        ('say "hi".txt', "say _hi_.txt"),
        ("a;b,c%d\\e.txt", "a_b_c_d_e.txt"),
        ("\ufdfa" * 85 + ".pdf", "download.pdf"),
    ],
)
def test_content_disposition_ascii_fallback(name: str, fallback: str) -> None:
    params = assert_well_formed(content_disposition(name, "attachment"))
    assert params["filename"] == fallback
    assert decode_ext_value(params["filename*"]) == name


def test_content_disposition_fallback_is_capped_and_keeps_extension() -> None:
    # U+FB03 "ﬃ" decomposes to three ASCII letters, so the fallback would triple in length.
    params = assert_well_formed(content_disposition("\ufb03" * 80 + ".pdf", "attachment"))
    assert len(params["filename"]) <= 255
    assert params["filename"].endswith("ffi.pdf")


def test_content_disposition_encodes_exactly_outside_attr_char() -> None:
    value = content_disposition("".join(map(chr, range(0x20, 0x7F))), "attachment")
    encoded = value.split("filename*=UTF-8''", 1)[1]
    assert encoded == (
        "%20!%22#$%25&%27%28%29%2A+%2C-.%2F0123456789%3A%3B%3C%3D%3E%3F%40"
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ%5B%5C%5D^_`abcdefghijklmnopqrstuvwxyz%7B|%7D~"
    )


NASTY_NAMES = [
    'a"; filename="evil.html',
    "x\r\nSet-Cookie: a=b",
    "a;b",
    "%41",
    "%",
    '"',
    "\\",
    '\\"',
    "filename*=UTF-8''evil.html",
    "a\x00b",
    "\r",
    "\n\n",
    "\ud800",
    "\udc00x\ud83d",
    "\ud83d\ude00",  # a surrogate pair as two code units, as some JSON decoders leave it
    "😀🎉🇫🇷",
    "\u202egpj.exe",
    "\u2028\u2029",
    "",
    " ",
    ".",
    "..",
    "'",
    "UTF-8''x",
    "a" * 5000,
    "é" * 3000,
    "\x7f\x80\x9f",
    "<script>alert(1)</script>.html",
]


@pytest.mark.parametrize("name", NASTY_NAMES)
@pytest.mark.parametrize("disposition", ["attachment", "inline"])
def test_content_disposition_keeps_any_input_inside_its_parameters(
    name: str, disposition: Literal["attachment", "inline"]
) -> None:
    params = assert_well_formed(content_disposition(name, disposition), disposition)
    if not any(0xD800 <= ord(ch) <= 0xDFFF for ch in name):
        assert decode_ext_value(params["filename*"]) == unicodedata.normalize("NFC", name)


def test_content_disposition_injection_stays_in_one_parameter() -> None:
    value = content_disposition('a"; filename="evil.html', "attachment")
    params = assert_well_formed(value)
    assert params["filename"] == "a__ filename=_evil.html"
    assert decode_ext_value(params["filename*"]) == 'a"; filename="evil.html'
    value = content_disposition("x\r\nSet-Cookie: a=b", "attachment")
    assert "Set-Cookie: a=b" not in value.split("filename*", 1)[1]


def _random_unicode(rng: random.Random) -> str:
    pools = [
        (0x00, 0x7F),  # ASCII, controls included
        (0x80, 0x24F),  # C1 controls, Latin-1, Latin Extended
        (0x300, 0x36F),  # combining marks
        (0x2000, 0x206F),  # general punctuation: bidi, zero-width, separators
        (0x3040, 0x30FF),  # kana
        (0x4E00, 0x4FFF),  # CJK
        (0xD800, 0xDFFF),  # surrogates
        (0xFB00, 0xFDFF),  # ligatures and presentation forms (big NFKD expansions)
        (0xFE00, 0xFFFF),  # variation selectors, BOM, specials, noncharacters
        (0x1F300, 0x1FAFF),  # emoji
        (0x0, 0x10FFFF),  # anything
    ]
    chars = []
    for _ in range(rng.randint(0, 40)):
        low, high = rng.choice(pools)
        chars.append(chr(rng.randint(low, high)))
    return "".join(chars)


def test_random_unicode_never_breaks_the_header() -> None:
    rng = random.Random(20261122)
    accepted = 0
    for _ in range(5000):
        name = _random_unicode(rng)
        try:
            valid = normalize_filename(name)
        except ValueError:
            valid = None
        value = content_disposition(name, "attachment")
        params = assert_well_formed(value)
        if valid is not None:
            accepted += 1
            assert decode_ext_value(params["filename*"]) == valid
            assert content_disposition(valid, "attachment") == value
    assert accepted > 500  # the generator must exercise the valid path too


# --- download_headers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "text/html; charset=utf-8",
        "image/svg+xml",
        "APPLICATION/XHTML+XML",
        "application/rss+xml",
        "application/atom+xml",
        "text/xml",
        "application/xml",
        "text/xsl",
        "application/xslt+xml",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "Text/JScript",
        "multipart/x-mixed-replace; boundary=x",
        " text/html ",
        # The "unknown type" essences make browsers sniff the bytes, which may find HTML.
        "unknown/unknown",
        "application/unknown",
        "application/x-unknown-content-type",
        # Not on the inline allow-list, so downloaded whatever is asked.
        "application/octet-stream",
        "application/zip",
        "text/csv",
        "text/vtt",
        "text/markdown",
        "image/tiff",
        "image/x-icon",
        "image/heic",
        "font/woff2",
        "application/vnd.ms-excel",
    ],
)
@pytest.mark.parametrize("disposition", ["inline", "attachment"])
def test_download_headers_serves_types_off_the_inline_list_as_octet_stream_attachment(
    content_type: str, disposition: Literal["attachment", "inline"]
) -> None:
    served_type, served_disposition = download_headers(content_type, disposition, "x.html")
    assert served_type == "application/octet-stream"
    assert served_disposition == "attachment; filename=\"x.html\"; filename*=UTF-8''x.html"


@pytest.mark.parametrize(
    "content_type", ["", "html", "text/html\r\nX: y", "text /html", "tëxt/plain"]
)
def test_download_headers_treats_malformed_types_as_unsafe(content_type: str) -> None:
    served_type, served_disposition = download_headers(content_type, "inline", "x")
    assert served_type == "application/octet-stream"
    assert served_disposition.startswith("attachment;")


@pytest.mark.parametrize(
    ("content_type", "disposition"),
    [
        ("image/png", "inline"),
        ("image/png", "attachment"),
        ("application/pdf", "inline"),
        ("application/json", "inline"),
        ("application/json", "attachment"),
        ("text/plain; charset=utf-8", "inline"),
        ("image/jpeg", "inline"),
        ("image/gif", "inline"),
        ("image/webp", "inline"),
        ("image/avif", "inline"),
        ("video/mp4", "inline"),
        ("video/webm", "attachment"),
        ("audio/mpeg", "inline"),
        ("Audio/Ogg", "inline"),
    ],
)
def test_download_headers_keeps_inline_allow_listed_types_as_declared(
    content_type: str, disposition: Literal["attachment", "inline"]
) -> None:
    served_type, served_disposition = download_headers(content_type, disposition, "Résumé 2026.pdf")
    assert served_type == content_type
    assert served_disposition == content_disposition("Résumé 2026.pdf", disposition)


def test_inline_types_are_lowercase_essences_and_never_scriptable_images() -> None:
    for media_type in INLINE_TYPES:
        assert media_type == media_type.lower().strip()
        assert ";" not in media_type
        assert media_type.count("/") == 1
    assert "image/svg+xml" not in INLINE_TYPES


def test_download_headers_fallback_name_is_nfc_round_trip() -> None:
    name = unicodedata.normalize("NFC", "Re\u0301sume\u0301.pdf")
    _, served_disposition = download_headers("application/pdf", "attachment", name)
    params = assert_well_formed(served_disposition)
    assert decode_ext_value(params["filename*"]) == name
