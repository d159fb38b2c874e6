"""`s3gate share` and `s3gate token --claim` as users run them: real processes against one real
`s3gate serve` (SQLite ledger) and the test SeaweedFS, shared by the tests of this module."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.cli import main
from app.devstack import EmbeddedS3
from devkit.env import clean_env
from devkit.processes import stop_process
from tests.support import (
    S3GATE,
    TEST_JWT_SECRET,
    Api,
    new_sub,
    run_s3gate,
    serve_api,
    tiny_png,
    upload_over_http,
)


@pytest.fixture(scope="module")
def api_url(
    tmp_path_factory: pytest.TempPathFactory, s3_server: EmbeddedS3, bucket: str
) -> Iterator[str]:
    """One `s3gate serve` for the module, with groups read from the `groups` claim."""
    tmp = tmp_path_factory.mktemp("cli-share")
    with (tmp / "server.log").open("w") as log:
        url, server = serve_api(
            [S3GATE, "serve"],
            tmp_path=tmp,
            s3=s3_server,
            bucket=bucket,
            stdout=log,
            S3GATE_GROUP_CLAIM="groups",
        )
        try:
            yield url
        finally:
            stop_process(server)


def _token(sub: str) -> str:
    return Api.auth(sub)["Authorization"].removeprefix("Bearer ")


def _s3gate(api_url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_s3gate(*args, env=clean_env(S3GATE_API_URL=api_url, S3GATE_TOKEN=token), timeout=60)


def _download(api_url: str, token: str, file_id: str) -> subprocess.CompletedProcess[bytes]:
    """`s3gate download ID -o -`: the bytes on stdout."""
    return subprocess.run(
        [S3GATE, "download", file_id, "-o", "-"],
        env=clean_env(S3GATE_API_URL=api_url, S3GATE_TOKEN=token),
        capture_output=True,
        timeout=60,
    )


def _claims(token: str) -> dict[str, Any]:
    """A JWT's payload, decoded without verifying it."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def test_a_subject_shared_with_downloads_identical_bytes_until_the_grant_is_revoked(
    api_url: str,
) -> None:
    owner, friend = new_sub(), new_sub()
    data = tiny_png()
    file = upload_over_http(api_url, owner, data)

    shared = _s3gate(api_url, _token(owner), "share", file["id"], "--to", friend)
    assert shared.returncode == 0, shared.stderr
    (line,) = shared.stdout.splitlines()  # the grant, as one JSON line
    grant = json.loads(line)
    assert (grant["subject"], grant["group"], grant["permission"]) == (friend, None, "read")
    assert grant["file_id"] == file["id"]
    assert grant["active"]

    downloaded = _download(api_url, _token(friend), file["id"])
    assert downloaded.returncode == 0, downloaded.stderr
    assert downloaded.stdout == data

    revoked = _s3gate(api_url, _token(owner), "share", file["id"], "--revoke-grant", grant["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout == ""
    refused = _download(api_url, _token(friend), file["id"])
    assert refused.returncode == 1
    assert b"not_found" in refused.stderr


def test_a_share_link_prints_only_its_url_lists_without_its_token_and_dies_when_revoked(
    api_url: str,
) -> None:
    owner, friend = new_sub(), new_sub()
    data = tiny_png()
    file = upload_over_http(api_url, owner, data)
    token = _token(owner)

    created = _s3gate(
        api_url, token, "share", file["id"], "--link", "--expires-in", "600", "--max-downloads", "5"
    )
    assert created.returncode == 0, created.stderr
    (url,) = created.stdout.splitlines()  # exactly one line: the URL, for URL=$(...)
    assert url.startswith(f"{api_url}/s/")
    secret = url.rsplit("/s/", 1)[1]
    assert secret not in created.stderr  # the human info on stderr never repeats the secret
    fetched = httpx.get(url, follow_redirects=True, timeout=30)  # no token: the URL is enough
    assert fetched.status_code == 200
    assert fetched.content == data

    granted = _s3gate(api_url, token, "share", file["id"], "--to", friend, "--permission", "delete")
    assert granted.returncode == 0, granted.stderr
    listed = _s3gate(api_url, token, "share", file["id"], "--list")
    assert listed.returncode == 0, listed.stderr
    items = [json.loads(line) for line in listed.stdout.splitlines()]
    grants = [item for item in items if item["kind"] == "grant"]
    links = [item for item in items if item["kind"] == "link"]
    assert len(items) == 2
    assert [(g["subject"], g["permission"]) for g in grants] == [(friend, "delete")]
    (link,) = links
    assert (link["max_downloads"], link["downloads"], link["state"]) == (5, 1, "active")
    assert "token" not in link
    assert "url" not in link
    assert secret not in listed.stdout

    revoked = _s3gate(api_url, token, "share", file["id"], "--revoke-link", link["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout == ""
    assert httpx.get(url, timeout=30).status_code == 404


def test_a_group_grant_reaches_a_token_minted_with_a_groups_claim(
    api_url: str, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(TEST_JWT_SECRET + "\n")
    owner, member = new_sub(), new_sub()
    minted = run_s3gate(
        "token",
        "--sub",
        member,
        "--secret-file",
        str(secret_file),
        "--claim",
        'groups=["a","b"]',
        "--claim",
        "tier=gold",  # not JSON: a plain string
        "--claim",
        "level=3",
        env=clean_env(),
    )
    assert minted.returncode == 0, minted.stderr
    member_token = minted.stdout.strip()
    claims = _claims(member_token)
    assert claims["sub"] == member
    assert (claims["groups"], claims["tier"], claims["level"]) == (["a", "b"], "gold", 3)

    data = tiny_png()
    file = upload_over_http(api_url, owner, data)
    shared = _s3gate(api_url, _token(owner), "share", file["id"], "--group", "b")
    assert shared.returncode == 0, shared.stderr
    assert json.loads(shared.stdout)["group"] == "b"
    auth = {"Authorization": f"Bearer {member_token}"}
    link = httpx.get(f"{api_url}/downloads/{file['id']}", headers=auth, timeout=30)
    assert link.status_code == 200, link.text
    assert httpx.get(link.json()["url"], timeout=30).content == data


def test_an_api_error_is_its_code_on_stderr_and_exit_status_1(api_url: str) -> None:
    owner = new_sub()
    for mode in (["--list"], ["--to", new_sub()], ["--link", "--expires-in", "600"]):
        failed = _s3gate(api_url, _token(owner), "share", str(uuid.uuid4()), *mode)
        assert failed.returncode == 1, (mode, failed.stderr)
        assert "not_found" in failed.stderr
        assert "Traceback" not in failed.stderr
        assert failed.stdout == ""
    # Someone else's file is as unknown as a missing one.
    theirs = upload_over_http(api_url, new_sub(), tiny_png())
    failed = _s3gate(api_url, _token(owner), "share", theirs["id"], "--list")
    assert failed.returncode == 1
    assert "not_found" in failed.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["share", "ID"],  # no mode
        ["share", "ID", "--to", "bob", "--link"],  # two modes
        ["share", "ID", "--to", "bob", "--group", "g"],
        ["share", "ID", "--to", "bob", "--permission", "write"],
        ["token", "--sub", "alice", "--claim", "no-equals-sign"],
        ["token", "--sub", "alice", "--claim", "=1"],
    ],
)
def test_usage_errors_are_refused_by_the_parser(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--link"], "--expires-in"),  # a link needs a lifetime
        (["--link", "--expires-in", "600", "--permission", "read"], "--permission"),
        (["--to", "bob", "--expires-in", "600"], "--expires-in"),
        (["--list", "--max-downloads", "3"], "--max-downloads"),
        (["--revoke-link", "L", "--expires-at", "2030-01-01T00:00:00Z"], "--expires-at"),
    ],
)
def test_options_of_another_mode_are_refused_before_any_request(
    options: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # An API nothing listens on: a request would fail with 1, not 2.
    code = main(["share", "ID", *options, "--api", "http://127.0.0.1:9", "--token", "t"])
    assert code == 2
    assert named in capsys.readouterr().err
