"""Client filenames: validation on upload, safe Content-Disposition and Content-Type on download."""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from typing import Literal

from app.mediatypes import essence, is_token_essence

MAX_FILENAME_BYTES = 255

# Cc: C0/C1 controls (CR, LF, TAB, NUL, DEL, ...). Cf: invisible format characters, which include
# the bidi overrides/isolates and zero-width characters used to disguise names ("gpj.exe").
# Cs: lone surrogates, which JSON "\ud800" escapes can produce and which have no UTF-8 form.
# Zl/Zp: U+2028/U+2029 act as line breaks in many renderers and log viewers.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

# Default_Ignorable_Code_Point (DerivedCoreProperties.txt, Unicode 14.0, the version Python
# 3.11's unicodedata implements, which has no lookup for this property): characters renderers
# draw as nothing, such as the Hangul fillers, the combining grapheme joiner and the variation
# selectors, which pass the category rule above (Lo, Mn) yet make two names look the same.
DEFAULT_IGNORABLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_DEFAULT_IGNORABLE = re.compile(
    "[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in DEFAULT_IGNORABLE_RANGES) + "]"
)
# Inside emoji (UTS #51) two invisible characters are part of what is drawn: U+200D joins
# pictographs ("👨‍👩‍👧") and U+FE0F asks for emoji presentation ("❤️", keycaps "1️⃣").
_ZWJ = "\u200d"
_VS16 = "\ufe0f"
_KEYCAP = "\u20e3"
_KEYCAP_BASES = frozenset("#*0123456789")
_EMOJI_MODIFIERS = range(0x1F3FB, 0x1F400)  # skin tones, which may stand before a ZWJ

# Besides non-printable ASCII, these are replaced in the quoted fallback: '"' and '\\' would need
# quoted-pair escaping that several user agents get wrong, ';' and ',' trip naive header
# splitters, and some browsers percent-decode the plain `filename` parameter.
_FALLBACK_UNSAFE = frozenset('"\\;%,')
_FALLBACK_MAX_CHARS = 255
_FALLBACK_DEFAULT_STEM = "download"
_MAX_EXTENSION_CHARS = 16

# RFC 8187 attr-char minus ALPHA / DIGIT and "-" "." "_" "~", which quote() never escapes.
_ATTR_CHAR_EXTRA = "!#$&+^`|"

# The only types served inline and under their declared type: browsers show them as an image,
# a media player, plain text, a JSON viewer or a PDF viewer, none of which runs the file's script
# at the bucket's origin. Everything else (HTML, XML, SVG, JavaScript, and any type that makes a
# browser sniff the bytes for HTML) is served as an octet-stream attachment.
INLINE_TYPES: frozenset[str] = frozenset(
    {
        # Raster formats browsers decode as pictures; SVG is a document that can run script.
        "image/png",
        "image/apng",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "text/plain",
        "application/json",
        "application/pdf",
    }
)
INLINE_TYPE_FAMILIES = ("video/", "audio/")

# The essences for which browsers run the MIME-sniffing "unknown type" rules (WHATWG MIME
# Sniffing), which may find HTML in the bytes: refused at upload unless listed exactly.
SNIFFED_TYPES: frozenset[str] = frozenset(
    {"unknown/unknown", "application/unknown", "application/x-unknown-content-type"}
)

# Signed into every download URL: otherwise S3 answers with whatever Cache-Control the object
# was stored with, which an uploader chooses and which could let a shared cache keep the file.
DOWNLOAD_CACHE_CONTROL = "private, no-store"

_SAFE_DOWNLOAD_TYPE = "application/octet-stream"


def normalize_filename(raw: str) -> str:
    """Return `raw` in NFC, or raise ValueError if it is not an acceptable filename."""
    # Messages never quote the name: it may be megabytes long or carry terminal escapes.
    name = unicodedata.normalize("NFC", raw)
    if not name:
        raise ValueError("filename must not be empty")
    # Checked before the byte length, since encoding a lone surrogate would raise.
    if any(_invisible(name, i) for i in range(len(name))):
        raise ValueError("filename contains control, formatting or invisible characters")
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise ValueError(f"filename must be at most {MAX_FILENAME_BYTES} bytes of UTF-8")
    if "/" in name or "\\" in name:
        raise ValueError("filename must not contain path separators")
    if name in {".", ".."}:
        raise ValueError("filename must not be '.' or '..'")
    if name.isspace():
        raise ValueError("filename must not be only whitespace")
    return name


def _pictograph(ch: str) -> bool:
    # Every element of an emoji ZWJ sequence is a symbol (So) that is visible on its own.
    return unicodedata.category(ch) == "So"


def _inside_emoji(name: str, i: int) -> bool:
    """Whether the ZWJ or VS16 at name[i] belongs to an emoji sequence."""
    ch, after = name[i], name[i + 1 : i + 2]
    if ch == _VS16:
        before = name[i - 1] if i else ""
        return bool(before) and (
            _pictograph(before) or (before in _KEYCAP_BASES and after == _KEYCAP)
        )
    if ch == _ZWJ:
        j = i - 1
        while j >= 0 and (name[j] == _VS16 or ord(name[j]) in _EMOJI_MODIFIERS):
            j -= 1
        return j >= 0 and _pictograph(name[j]) and bool(after) and _pictograph(after)
    return False


def _invisible(name: str, i: int) -> bool:
    ch = name[i]
    hidden = unicodedata.category(ch) in _FORBIDDEN_CATEGORIES or bool(_DEFAULT_IGNORABLE.match(ch))
    return hidden and not _inside_emoji(name, i)


def _without_surrogates(text: str) -> str:
    # Rejoins surrogate pairs that arrived split and turns lone ones into U+FFFD, so the
    # result always has a UTF-8 encoding.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _ascii_fallback(name: str) -> str:
    kept: list[str] = []
    for ch in unicodedata.normalize("NFKD", name):
        if unicodedata.category(ch).startswith("M"):
            continue  # accents split off by NFKD: "é" -> "e"
        kept.append(ch if " " <= ch <= "~" and ch not in _FALLBACK_UNSAFE else "_")
    fallback = "".join(kept)

    stem, dot, ext = fallback.rpartition(".")
    if not (dot and stem and ext.isalnum() and len(ext) <= _MAX_EXTENSION_CHARS):
        stem, ext = fallback, ""
    if not any(ch.isalnum() for ch in stem):
        stem = _FALLBACK_DEFAULT_STEM
    suffix = f".{ext}" if ext else ""
    # NFKD can expand a character up to 18-fold (U+FDFA), so cap what goes into the header.
    return stem[: _FALLBACK_MAX_CHARS - len(suffix)] + suffix


def content_disposition(filename: str, disposition: Literal["attachment", "inline"]) -> str:
    """Build an RFC 6266 header value with an ASCII `filename` and an RFC 8187 `filename*`."""
    if disposition not in ("attachment", "inline"):
        raise ValueError("disposition must be 'attachment' or 'inline'")
    name = unicodedata.normalize("NFC", _without_surrogates(filename))
    encoded = urllib.parse.quote(name.encode("utf-8"), safe=_ATTR_CHAR_EXTRA)
    return f"{disposition}; filename=\"{_ascii_fallback(name)}\"; filename*=UTF-8''{encoded}"


def is_inline_safe(content_type: str) -> bool:
    """Tell whether a browser may render a response of this content type inline."""
    found = essence(content_type)
    return found in INLINE_TYPES or found.startswith(INLINE_TYPE_FAMILIES)


def download_headers(
    content_type: str, disposition: Literal["attachment", "inline"], filename: str
) -> tuple[str, str]:
    """Return the (Content-Type, Content-Disposition) a download URL should make S3 send."""
    found = essence(content_type)
    malformed = not is_token_essence(found) or not (
        content_type.isascii() and content_type.isprintable()
    )
    # A malformed type would let the browser sniff the bytes, which is as risky as HTML.
    if malformed or not is_inline_safe(found):
        return _SAFE_DOWNLOAD_TYPE, content_disposition(filename, "attachment")
    return content_type, content_disposition(filename, disposition)
