"""The malware scanner client (app/scanner.py) against a real clamd: Debian's, started once for
this module with a database made here from the EICAR test file (devkit/clamd.py). What a real
clamd will not do on demand (hang, answer nonsense, stop reading) comes from small asyncio
servers in this file. Every failure is ScannerUnavailable, never a clean verdict, and every
path closes its connection.

Without clamd installed the tests skip, or fail where the run requires it
(S3GATE_TEST_REQUIRE_SCANNER=1).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.scanner import ClamdScanner, ScannerUnavailable, ScanResult, parse_scanner_url
from devkit.clamd import Clamd
from devkit.ports import free_port

# A connection left for the garbage collector to close warns; here that fails the test.
pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

MIB = 1024 * 1024
# Short, so the fake servers' timeouts cost little; the margin absorbs a loaded machine.
FAKE_TIMEOUT = 0.5
MARGIN = 1.0


def scanner(url: str, *, timeout: float = 10.0, max_bytes: int = 64 * MIB) -> ClamdScanner:
    return ClamdScanner(parse_scanner_url(url), timeout_seconds=timeout, max_bytes=max_bytes)


async def chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def sliced(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@dataclass
class Source:
    """Zeros, `total` bytes of them in 1 MiB chunks, counting what the scanner took."""

    total: int
    taken: int = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        block = bytes(MIB)
        while self.taken < self.total:
            piece = block[: min(MIB, self.total - self.taken)]
            self.taken += len(piece)
            yield piece


def payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


# --- verdicts from the real clamd ---------------------------------------------------------


async def test_eicar_is_infected_with_its_signature_name(clamd: Clamd) -> None:
    result = await scanner(clamd.tcp_url).scan(chunks(clamd.eicar))
    assert result == ScanResult("infected", clamd.eicar_signature)
    assert result.infected


@pytest.mark.parametrize(
    "data",
    [b"hello, world\n", payload(200_000), b""],
    ids=["text", "random-200k", "empty"],
)
async def test_a_clean_payload_is_clean(clamd: Clamd, data: bytes) -> None:
    result = await scanner(clamd.tcp_url).scan(sliced(data, 65_536))
    assert result == ScanResult("clean")
    assert not result.infected


async def test_eicar_with_one_byte_changed_is_clean(clamd: Clamd) -> None:
    near = clamd.eicar[:-1] + b"-"
    assert await scanner(clamd.tcp_url).scan(chunks(near)) == ScanResult("clean")


@pytest.mark.parametrize("size", [1, 5, 67])
async def test_eicar_split_into_many_small_chunks_is_still_infected(
    clamd: Clamd, size: int
) -> None:
    result = await scanner(clamd.tcp_url).scan(sliced(clamd.eicar, size))
    assert result == ScanResult("infected", clamd.eicar_signature)


async def test_empty_chunks_do_not_end_the_stream_early(clamd: Clamd) -> None:
    # Sent as a frame, an empty chunk would be the end of the stream: clamd would see an empty
    # file and answer clean.
    half = len(clamd.eicar) // 2
    stream = chunks(b"", clamd.eicar[:half], b"", b"", clamd.eicar[half:], b"")
    result = await scanner(clamd.tcp_url).scan(stream)
    assert result == ScanResult("infected", clamd.eicar_signature)


async def test_eicar_inside_a_3_mib_archive_across_a_chunk_boundary_is_infected(
    clamd: Clamd,
) -> None:
    # The database holds a hash of the whole EICAR file, so clamd finds it as an archive
    # member (as it would a real sample inside a zip), not as bytes inside another file.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("padding.bin", payload(3 * MIB))
        archive.writestr("eicar.com", clamd.eicar)
    data = buffer.getvalue()
    assert len(data) > 3 * MIB
    # Cut every chunk so that the first boundary falls in the middle of the EICAR bytes.
    cut = data.index(clamd.eicar) + len(clamd.eicar) // 2
    result = await scanner(clamd.tcp_url).scan(sliced(data, cut))
    assert result == ScanResult("infected", clamd.eicar_signature)


async def test_the_unix_socket_url_scans_and_pings_too(clamd: Clamd) -> None:
    unix = scanner(clamd.socket_url)
    assert await unix.ping()
    assert await unix.scan(chunks(clamd.eicar)) == ScanResult("infected", clamd.eicar_signature)
    assert await unix.scan(chunks(b"clean")) == ScanResult("clean")


async def test_ping_answers_true_when_clamd_is_up(clamd: Clamd) -> None:
    assert await scanner(clamd.tcp_url).ping()


async def test_one_scanner_serves_concurrent_scans_each_with_its_own_verdict(
    clamd: Clamd,
) -> None:
    shared = scanner(clamd.tcp_url)
    streams = [clamd.eicar if n % 2 else payload(100_000, seed=n) for n in range(8)]
    results = await asyncio.gather(*(shared.scan(sliced(data, 4096)) for data in streams))
    assert [result.verdict for result in results] == ["clean", "infected"] * 4


# --- limits: over clamd's StreamMaxLength, over the client's max_bytes --------------------


async def test_a_stream_of_exactly_clamds_stream_max_length_is_scanned(clamd: Clamd) -> None:
    source = Source(clamd.stream_max_length)
    result = await scanner(clamd.tcp_url, max_bytes=4 * clamd.stream_max_length).scan(aiter(source))
    assert result == ScanResult("clean")


@pytest.mark.parametrize("far", [False, True], ids=["one-byte-over", "three-times-over"])
async def test_a_stream_over_clamds_stream_max_length_is_unavailable_not_clean(
    clamd: Clamd, far: bool
) -> None:
    limit = clamd.stream_max_length
    source = Source(3 * limit if far else limit + 1)
    roomy = scanner(clamd.tcp_url, max_bytes=4 * limit)
    with pytest.raises(ScannerUnavailable) as refused:
        await roomy.scan(aiter(source))
    assert refused.value.reason == "clamd refused the stream: size limit exceeded"
    if far:
        # clamd answers and hangs up at its limit; the rest of the object is never fetched.
        assert source.taken < source.total


async def test_max_bytes_is_scanned_and_one_byte_more_is_refused_before_it_is_sent(
    clamd: Clamd,
) -> None:
    limited = scanner(clamd.tcp_url, max_bytes=1000)
    assert await limited.scan(sliced(payload(1000), 300)) == ScanResult("clean")
    source = Source(1001)
    with pytest.raises(ScannerUnavailable) as refused:
        await limited.scan(aiter(source))
    assert refused.value.reason == "the stream is over the scan limit of 1000 bytes"


# --- a scanner that is down, slow or not clamd ------------------------------------------------


async def test_an_address_nobody_listens_on_is_unavailable_at_once_and_ping_is_false() -> None:
    nobody = scanner(f"clamav://127.0.0.1:{free_port()}")
    started = time.perf_counter()
    with pytest.raises(ScannerUnavailable) as refused:
        await nobody.scan(chunks(b"anything"))
    assert refused.value.reason == "clamd refused the connection"
    assert await nobody.ping() is False
    assert time.perf_counter() - started < MARGIN


async def test_a_missing_unix_socket_is_unavailable_and_ping_is_false(tmp_path: Path) -> None:
    missing = scanner(f"clamav://{tmp_path / 'clamd.sock'}")
    with pytest.raises(ScannerUnavailable) as refused:
        await missing.scan(chunks(b"anything"))
    assert refused.value.reason == "clamd's socket does not exist"
    assert await missing.ping() is False


Handler = Callable[["FakeClamd", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class FakeClamd:
    """A plain asyncio server standing in for clamd: what it got, and when its client hung up."""

    url: str = ""
    received: bytearray = field(default_factory=bytearray)
    got_data: asyncio.Event = field(default_factory=asyncio.Event)
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)

    async def read_until_hang_up(self, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(65_536):
            self.received += data
            self.got_data.set()
        self.hung_up.set()

    async def read_stream(self, reader: asyncio.StreamReader) -> None:
        """Read up to the end-of-stream frame (the tests send no zero bytes to this server)."""
        while not self.received.endswith(b"\0\0\0\0"):
            data = await reader.read(65_536)
            if not data:
                return
            self.received += data
            self.got_data.set()


@contextlib.asynccontextmanager
async def fake_clamd(handler: Handler) -> AsyncIterator[FakeClamd]:
    fake = FakeClamd()
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(fake, reader, writer)
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    fake.url = f"clamav://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield fake
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def never_answers(fake: FakeClamd, reader: asyncio.StreamReader, _: object) -> None:
    await fake.read_until_hang_up(reader)


async def never_reads(fake: FakeClamd, reader: asyncio.StreamReader, _: object) -> None:
    await asyncio.sleep(3600)


async def test_a_scanner_that_never_answers_is_unavailable_after_the_timeout() -> None:
    async with fake_clamd(never_answers) as fake:
        slow = scanner(fake.url, timeout=FAKE_TIMEOUT)
        started = time.perf_counter()
        with pytest.raises(ScannerUnavailable) as refused:
            await slow.scan(chunks(b"some clean bytes"))
        elapsed = time.perf_counter() - started
        assert refused.value.reason == "clamd did not answer within 0.5 s"
        assert FAKE_TIMEOUT * 0.9 <= elapsed < FAKE_TIMEOUT + MARGIN
        await asyncio.wait_for(fake.hung_up.wait(), MARGIN)
        assert bytes(fake.received).startswith(b"zINSTREAM\0\0\0\0\x10some clean bytes")


async def test_ping_of_a_scanner_that_never_answers_is_false_after_the_timeout() -> None:
    async with fake_clamd(never_answers) as fake:
        started = time.perf_counter()
        assert await scanner(fake.url, timeout=FAKE_TIMEOUT).ping() is False
        assert FAKE_TIMEOUT * 0.9 <= time.perf_counter() - started < FAKE_TIMEOUT + MARGIN
        await asyncio.wait_for(fake.hung_up.wait(), MARGIN)


async def test_a_scanner_that_stops_reading_mid_stream_is_unavailable_after_the_timeout() -> None:
    async with fake_clamd(never_reads) as fake:
        stuck = scanner(fake.url, timeout=FAKE_TIMEOUT, max_bytes=1024 * MIB)
        source = Source(1024 * MIB)
        started = time.perf_counter()
        with pytest.raises(ScannerUnavailable) as refused:
            await stuck.scan(aiter(source))
        assert refused.value.reason == "clamd did not take the stream within 0.5 s"
        assert time.perf_counter() - started < FAKE_TIMEOUT + MARGIN
        assert source.taken < source.total


def answers(reply: bytes, *, then_hang_up: bool = False) -> Handler:
    async def handler(
        fake: FakeClamd, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await fake.read_stream(reader)
        writer.write(reply)
        await writer.drain()
        if not then_hang_up:
            await fake.read_until_hang_up(reader)

    return handler


MALFORMED = "clamd sent a malformed answer"
NO_ANSWER = "clamd closed the connection without an answer"


@pytest.mark.parametrize(
    ("reply", "then_hang_up", "reason"),
    [
        pytest.param(b"HTTP/1.1 400 Bad Request\r\n\r\n\0", False, MALFORMED, id="http"),
        pytest.param(b"stream: FOUND\0", False, MALFORMED, id="found-without-a-name"),
        pytest.param(b"stream: two words FOUND\0", False, MALFORMED, id="name-with-a-space"),
        pytest.param(b"stream: OK, more\0", False, MALFORMED, id="ok-and-more"),
        pytest.param(b"stream: Eicar\x07 FOUND\0", False, MALFORMED, id="control-character"),
        pytest.param(b"stream: \xff\xfe FOUND\0", False, MALFORMED, id="not-ascii"),
        pytest.param(b"x" * 10_000 + b"\0", False, MALFORMED, id="too-long"),
        pytest.param(b"PONG\0", False, MALFORMED, id="pong"),
        pytest.param(b"stream: OK", True, NO_ANSWER, id="hang-up-before-the-terminator"),
        pytest.param(b"", True, NO_ANSWER, id="hang-up-without-a-word"),
        pytest.param(
            b"stream: Can't allocate memory ERROR\0", False, "clamd reported an error", id="error"
        ),
        pytest.param(
            b"INSTREAM size limit exceeded. ERROR\0",
            False,
            "clamd refused the stream: size limit exceeded",
            id="size-limit",
        ),
    ],
)
async def test_an_answer_that_is_not_a_verdict_is_unavailable(
    reply: bytes, then_hang_up: bool, reason: str
) -> None:
    async with fake_clamd(answers(reply, then_hang_up=then_hang_up)) as fake:
        with pytest.raises(ScannerUnavailable) as refused:
            await scanner(fake.url, timeout=FAKE_TIMEOUT).scan(chunks(b"clean private bytes"))
        assert refused.value.reason == str(refused.value) == reason
        if not then_hang_up:
            await asyncio.wait_for(fake.hung_up.wait(), MARGIN)


async def test_an_ok_before_the_stream_ends_is_no_verdict_and_stops_the_stream() -> None:
    async def answers_at_once(
        fake: FakeClamd, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(b"stream: OK\0")
        await fake.read_until_hang_up(reader)

    async with fake_clamd(answers_at_once) as fake:
        source = Source(64 * MIB)

        async def slow_source() -> AsyncIterator[bytes]:
            async for piece in source:
                await asyncio.sleep(0.01)
                yield piece

        with pytest.raises(ScannerUnavailable) as refused:
            await scanner(fake.url, timeout=FAKE_TIMEOUT, max_bytes=64 * MIB).scan(slow_source())
        assert refused.value.reason == "clamd answered before the stream ended"
        assert source.taken < source.total


# --- connections are closed on every path -------------------------------------------------


@pytest.mark.parametrize("moment", ["mid-stream", "awaiting-the-answer"])
async def test_cancelling_a_scan_closes_its_connection(moment: str) -> None:
    async with fake_clamd(never_answers) as fake:
        stalled = asyncio.Event()

        async def source() -> AsyncIterator[bytes]:
            yield b"first chunk"
            if moment == "mid-stream":
                await stalled.wait()  # the store stalls; never set
            yield b"last chunk"

        task = asyncio.create_task(scanner(fake.url).scan(source()))
        await asyncio.wait_for(fake.got_data.wait(), MARGIN)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(fake.hung_up.wait(), MARGIN)
        sent = bytes(fake.received)
        assert sent.startswith(b"zINSTREAM\0\0\0\0\x0bfirst chunk")
        assert sent.endswith(b"\0\0\0\0") is (moment == "awaiting-the-answer")


async def test_an_error_from_the_source_passes_through_and_closes_the_connection() -> None:
    class StoreFailed(Exception):
        pass

    async def failing() -> AsyncIterator[bytes]:
        yield b"first chunk"
        raise StoreFailed

    async with fake_clamd(never_answers) as fake:
        with pytest.raises(StoreFailed):
            await scanner(fake.url).scan(failing())
        await asyncio.wait_for(fake.hung_up.wait(), MARGIN)
