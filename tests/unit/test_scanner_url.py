"""The S3GATE_SCANNER address: the clamav:// forms accepted, and what every refusal says."""

from __future__ import annotations

import pytest

from app.scanner import ACCEPTED_FORMS, TcpAddress, UnixAddress, parse_scanner_url


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("clamav://127.0.0.1:3310", TcpAddress("127.0.0.1", 3310)),
        ("clamav://scanner.internal:13310", TcpAddress("scanner.internal", 13310)),
        ("clamav://[::1]:3310", TcpAddress("::1", 3310)),
        ("clamav://127.0.0.1:3310/", TcpAddress("127.0.0.1", 3310)),
        ("CLAMAV://Scanner.Internal:1", TcpAddress("scanner.internal", 1)),
        ("clamav://127.0.0.1:65535", TcpAddress("127.0.0.1", 65535)),
    ],
)
def test_a_tcp_url_gives_its_host_and_port(url: str, address: TcpAddress) -> None:
    assert parse_scanner_url(url) == address


@pytest.mark.parametrize("url", ["clamav://127.0.0.1", "clamav://127.0.0.1:", "clamav://clamd"])
def test_a_tcp_url_without_a_port_means_clamds_3310(url: str) -> None:
    address = parse_scanner_url(url)
    assert isinstance(address, TcpAddress)
    assert address.port == 3310


@pytest.mark.parametrize(
    "url", ["clamav:///run/clamav/clamd.ctl", "clamav:///tmp/clamd.sock", "clamav:///s"]
)
def test_three_slashes_name_a_unix_socket_by_its_absolute_path(url: str) -> None:
    assert parse_scanner_url(url) == UnixAddress(url.removeprefix("clamav://"))


@pytest.mark.parametrize(
    "url",
    ["clamav://127.0.0.1:3310", "clamav://[::1]:3310", "clamav:///run/clamav/clamd.ctl"],
)
def test_an_address_prints_as_the_url_it_came_from(url: str) -> None:
    assert str(parse_scanner_url(url)) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "it is empty"),
        ("127.0.0.1:3310", "the scheme must be clamav://"),
        ("localhost:3310", "the scheme must be clamav://"),
        ("tcp://127.0.0.1:3310", "the scheme must be clamav://"),
        ("unix:///run/clamav/clamd.ctl", "the scheme must be clamav://"),
        ("/run/clamav/clamd.ctl", "the scheme must be clamav://"),
        ("clamav://", "it names no host or socket path"),
        ("clamav:/run/clamd.sock", "it names no host or socket path"),
        ("clamav:run/clamd.sock", "it names no host or socket path"),
        ("clamav://:3310", "it names no host"),
        ("clamav://127.0.0.1:0", "the port must be a number from 1 to 65535"),
        ("clamav://127.0.0.1:65536", "the port must be a number from 1 to 65535"),
        ("clamav://127.0.0.1:port", "the port must be a number from 1 to 65535"),
        ("clamav://127.0.0.1:-1", "the port must be a number from 1 to 65535"),
        ("clamav://127.0.0.1:3310/scan", "a TCP address takes no path"),
        ("clamav://scanner/run/clamd.sock", "a TCP address takes no path"),
        ("clamav://user:secret@127.0.0.1:3310", "it takes no user or password"),
        ("clamav://127.0.0.1:3310?timeout=5", "it takes no query or fragment"),
        ("clamav://127.0.0.1:3310?", "it takes no query or fragment"),
        ("clamav:///run/clamd.sock#x", "it takes no query or fragment"),
        ("clamav:///", "the socket path names a directory"),
        ("clamav:///run/clamav/", "the socket path names a directory"),
        ("clamav:///" + "a" * 107, "the socket path is longer than 107 bytes"),
        (" clamav://127.0.0.1:3310", "it contains spaces or control characters"),
        ("clamav://127.0.0.1:3310\n", "it contains spaces or control characters"),
        ("clamav:///run/clam d.sock", "it contains spaces or control characters"),
        ("clamav://[::1:3310", "it is not a valid URL"),
    ],
)
def test_anything_else_is_refused_saying_why_and_what_is_accepted(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match="clamav") as refused:
        parse_scanner_url(url)
    assert str(refused.value) == f"{problem}; expected {ACCEPTED_FORMS}"


def test_the_accepted_forms_name_both_addresses_and_the_default_port() -> None:
    assert "clamav://HOST[:PORT]" in ACCEPTED_FORMS
    assert "clamav:///ABSOLUTE/PATH" in ACCEPTED_FORMS
    assert "3310" in ACCEPTED_FORMS


def test_a_refusal_never_repeats_the_value() -> None:
    with pytest.raises(ValueError, match="no user or password") as refused:
        parse_scanner_url("clamav://admin:hunter2@127.0.0.1:3310")
    assert "hunter2" not in str(refused.value)


def test_the_longest_socket_path_a_unix_socket_holds_is_accepted() -> None:
    path = "/" + "a" * 106
    assert parse_scanner_url("clamav://" + path) == UnixAddress(path)
