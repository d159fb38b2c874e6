"""The malware scanner client: ClamAV's clamd, spoken to over TCP or a unix socket.

clamd's INSTREAM command takes a file as a stream of frames: the null-terminated command
`zINSTREAM\\0`, then chunks each prefixed with its length as 4 big-endian bytes, then a
zero-length frame that ends the file; clamd answers one null-terminated line, `stream: OK` or
`stream: <signature> FOUND` (or `... ERROR`). s3gate feeds it the object straight from the
store's body stream, chunk by chunk, so the bytes never land on s3gate's own disk: an upload
that is still unverified (perhaps malware) is never at rest anywhere s3gate reads or serves
files from, there is no temporary file to clean up after a crash, and disk space never bounds
what can be scanned. (clamd spools the stream in its own TemporaryDirectory while it scans;
that is on the scanner's side.) Any answer other than clean or infected, and any failure to
get one, is `ScannerUnavailable`: the caller keeps the file unverified and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import struct
import urllib.parse
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Literal, TypeAlias, TypeVar

DEFAULT_PORT = 3310
# The largest frame sent: a store's large body chunks never sit whole in the send buffer.
CHUNK_BYTES = 64 * 1024
# Longer than any real reply ("stream: <signature name> FOUND"); a longer one is not clamd.
REPLY_LIMIT_BYTES = 4096
# sockaddr_un.sun_path holds 108 bytes on Linux, the terminating NUL included.
MAX_SOCKET_PATH_BYTES = 107
ACCEPTED_FORMS = (
    "clamav://HOST[:PORT] (TCP, port 3310 if left out) "
    "or clamav:///ABSOLUTE/PATH.sock (a unix socket)"
)

_SCHEME = "clamav"
_END_OF_STREAM = b"\0\0\0\0"
_FRAME_LENGTH = struct.Struct(">I")
_T = TypeVar("_T")


@dataclass(frozen=True)
class TcpAddress:
    """clamd on a TCP port."""

    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{_SCHEME}://{host}:{self.port}"


@dataclass(frozen=True)
class UnixAddress:
    """clamd on a unix socket (its LocalSocket)."""

    path: str

    def __str__(self) -> str:
        return f"{_SCHEME}://{self.path}"


ScannerAddress: TypeAlias = TcpAddress | UnixAddress


def parse_scanner_url(url: str) -> ScannerAddress:
    """The address in a `clamav://` URL; ValueError naming the accepted forms otherwise."""
    # The refusal never repeats the value: the setting is shown back in logs and errors.
    if not url:
        raise _refused("it is empty")
    if any(char.isspace() or not char.isprintable() for char in url):
        raise _refused("it contains spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise _refused("it is not a valid URL") from None
    if parts.scheme != _SCHEME:
        raise _refused(f"the scheme must be {_SCHEME}://")
    if "?" in url or "#" in url:
        raise _refused("it takes no query or fragment")
    if parts.netloc:
        return _tcp_address(parts)
    if not url[len(_SCHEME) + 1 :].startswith("///"):
        raise _refused("it names no host or socket path")
    return _unix_address(parts.path)


def _tcp_address(parts: urllib.parse.SplitResult) -> TcpAddress:
    if "@" in parts.netloc:
        raise _refused("it takes no user or password")
    if not parts.hostname:
        raise _refused("it names no host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise _refused("the port must be a number from 1 to 65535")
    if parts.path not in ("", "/"):
        raise _refused("a TCP address takes no path")
    return TcpAddress(parts.hostname, DEFAULT_PORT if port is None else port)


def _unix_address(path: str) -> UnixAddress:
    if path == "/" or path.endswith("/"):
        raise _refused("the socket path names a directory")
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        raise _refused(f"the socket path is longer than {MAX_SOCKET_PATH_BYTES} bytes")
    return UnixAddress(path)


def _refused(problem: str) -> ValueError:
    return ValueError(f"{problem}; expected {ACCEPTED_FORMS}")


@dataclass(frozen=True)
class ScanResult:
    """clamd's verdict on one stream; `signature` names what it found."""

    verdict: Literal["clean", "infected"]
    signature: str | None = None

    @property
    def infected(self) -> bool:
        return self.verdict == "infected"


class ScannerUnavailable(Exception):
    """No verdict: clamd was unreachable, slow, refused the stream or answered nonsense. The
    reason is short and stable and never quotes the scanned bytes or clamd's reply."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ClamdScanner:
    """A clamd client, built once and shared: each call opens its own connection."""

    def __init__(self, address: ScannerAddress, *, timeout_seconds: float, max_bytes: int) -> None:
        if not (math.isfinite(timeout_seconds) and timeout_seconds > 0):
            raise ValueError("timeout_seconds must be a positive number")
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.address = address
        self.timeout_seconds = timeout_seconds
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"ClamdScanner({self.address}, timeout_seconds={self.timeout_seconds:g})"

    async def ping(self) -> bool:
        """Whether clamd answers PING with PONG within the timeout (never raises for a scanner
        that is down)."""
        try:
            async with asyncio.timeout(self.timeout_seconds):
                reader, writer = await self._open()
                try:
                    writer.write(b"zPING\0")
                    return await reader.readuntil(b"\0") == b"PONG\0"
                finally:
                    writer.transport.abort()
        except (OSError, TimeoutError, EOFError, asyncio.LimitOverrunError, ScannerUnavailable):
            return False

    async def scan(self, chunks: AsyncIterator[bytes]) -> ScanResult:
        """clamd's verdict on the bytes `chunks` yields. ScannerUnavailable for anything else;
        an error raised by `chunks` itself passes through unchanged. The caller owns `chunks`:
        a failed scan stops reading it and leaves closing it to the caller."""
        reader, writer = await self._open()
        # Read while writing: clamd answers early when it refuses a stream (size limit) and
        # then resets the connection, which would make a later read lose that answer.
        answer = asyncio.ensure_future(_read_reply(reader))
        answer.add_done_callback(_consume_outcome)
        try:
            ended = False
            # A broken connection while sending: the answer (or why none comes) is on the
            # reading side.
            with contextlib.suppress(OSError):
                ended = await self._send(writer, chunks, answer)
            try:
                async with asyncio.timeout(self.timeout_seconds):
                    reply = await answer
            except TimeoutError:
                raise ScannerUnavailable(self._late("answer")) from None
            result = _verdict(reply)
            if not ended:
                # Not a verdict on these bytes: clamd had not seen them all.
                raise ScannerUnavailable("clamd answered before the stream ended")
            return result
        finally:
            # Synchronous, so a cancelled scan cannot skip it; nothing is left to flush.
            answer.cancel()
            writer.transport.abort()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self.timeout_seconds):
                match self.address:
                    case TcpAddress(host, port):
                        return await asyncio.open_connection(host, port, limit=REPLY_LIMIT_BYTES)
                    case UnixAddress(path):
                        return await asyncio.open_unix_connection(path, limit=REPLY_LIMIT_BYTES)
        except TimeoutError:
            raise ScannerUnavailable(self._late("accept the connection")) from None
        except ConnectionRefusedError:
            raise ScannerUnavailable("clamd refused the connection") from None
        except FileNotFoundError:
            raise ScannerUnavailable("clamd's socket does not exist") from None
        except OSError as exc:
            raise ScannerUnavailable(f"clamd is unreachable ({_os_error(exc)})") from None

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        chunks: AsyncIterator[bytes],
        answer: asyncio.Future[bytes],
    ) -> bool:
        """Send the stream; whether it was sent to its end (not if clamd answered first)."""
        writer.write(b"zINSTREAM\0")
        sent = 0
        async for chunk in chunks:
            if answer.done():
                return False  # clamd has answered (refused) already: nothing more is read
            # An empty chunk would be the zero-length frame that ends the stream early.
            for start in range(0, len(chunk), CHUNK_BYTES):
                piece = memoryview(chunk)[start : start + CHUNK_BYTES]
                if sent + len(piece) > self.max_bytes:
                    raise ScannerUnavailable(
                        f"the stream is over the scan limit of {self.max_bytes} bytes"
                    )
                sent += len(piece)
                writer.write(_FRAME_LENGTH.pack(len(piece)))
                writer.write(piece)
                await self._bounded(writer.drain(), "take the stream")
        writer.write(_END_OF_STREAM)
        await self._bounded(writer.drain(), "take the stream")
        return True

    async def _bounded(self, step: Awaitable[_T], doing: str) -> _T:
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await step
        except TimeoutError:
            raise ScannerUnavailable(self._late(doing)) from None

    def _late(self, doing: str) -> str:
        return f"clamd did not {doing} within {self.timeout_seconds:g} s"


async def _read_reply(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\0")
    except asyncio.IncompleteReadError:
        raise ScannerUnavailable("clamd closed the connection without an answer") from None
    except asyncio.LimitOverrunError:
        raise ScannerUnavailable("clamd sent a malformed answer") from None
    except OSError as exc:
        raise ScannerUnavailable(f"clamd dropped the connection ({_os_error(exc)})") from None


def _verdict(reply: bytes) -> ScanResult:
    try:
        text = reply.removesuffix(b"\0").decode("ascii")
    except UnicodeDecodeError:
        raise ScannerUnavailable("clamd sent a malformed answer") from None
    if text == "stream: OK":
        return ScanResult("clean")
    if text == "INSTREAM size limit exceeded. ERROR":
        raise ScannerUnavailable("clamd refused the stream: size limit exceeded")
    if text.endswith(" ERROR"):
        raise ScannerUnavailable("clamd reported an error")
    if text.startswith("stream: ") and text.endswith(" FOUND"):
        signature = text[len("stream: ") : -len(" FOUND")]
        if signature and signature.isprintable() and " " not in signature:
            return ScanResult("infected", signature)
    raise ScannerUnavailable("clamd sent a malformed answer")


def _os_error(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _consume_outcome(answer: asyncio.Future[bytes]) -> None:
    # A scan that fails before it awaits the answer must not leave asyncio to report the
    # answer's own failure as "never retrieved".
    if not answer.cancelled():
        answer.exception()
