"""Sharing in real Chromium: the browser client's grants, share links, batch downloads and
access history, and the demo page's Share panel, against `s3gate serve` and SeaweedFS. A share
link's GET is a same-origin 307 to the store's origin: the browser follows it under the
bucket's CORS rule and the demo page's CSP, as a real page would."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import httpx

from tests.browser.conftest import DemoServer
from tests.support import new_sub

# The client module as the service serves it, and two clients on window: the file's owner's
# and another subject's.
CLIENTS = """async ({ token, otherToken }) => {
  const s3gate = await import("/client/s3gate.js");
  window.owner = s3gate.createClient({ token });
  window.other = s3gate.createClient({ token: otherToken });
  window.toBase64 = (buffer) => {
    let binary = "";
    for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
    return btoa(binary);
  };
  // The outcome of a call: its answer, or the S3gateError's name, code and status.
  window.attempt = async (call) => {
    try {
      return { answer: await call() };
    } catch (error) {
      return { error: { name: error.name, code: error.code ?? null, status: error.status } };
    }
  };
}"""

UPLOAD = """async (data) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const blob = new File([bytes], "shared.bin", { type: "application/octet-stream" });
  return window.owner.upload(blob);
}"""

# fetch() of a URL with the page's defaults (follow redirects, CORS): status, where it ended,
# whether it was redirected, and the body (base64) or the problem's code.
FETCH = """async (url) => {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.arrayBuffer();
  const type = response.headers.get("content-type") ?? "";
  return {
    status: response.status,
    url: response.url,
    redirected: response.redirected,
    body: window.toBase64(body),
    code: type.includes("json") ? JSON.parse(new TextDecoder().decode(body)).code : null,
  };
}"""


def test_the_client_shares_by_link_and_by_grant_and_reads_the_access_history(
    demo: DemoServer, page: Any, sub: str
) -> None:
    other = new_sub()
    data = os.urandom(50_000)
    # The demo page: the service's origin under the demo's CSP (connect-src: self and store).
    page.goto(f"{demo.api}/demo/")
    page.evaluate(CLIENTS, {"token": demo.token(sub), "otherToken": demo.token(other)})
    file = page.evaluate(UPLOAD, base64.b64encode(data).decode())
    assert file["status"] == "available"
    file_id = file["id"]

    # A share link: following it in the browser lands on the store with the very bytes.
    link = page.evaluate(
        "(id) => window.owner.createLink(id, { expiresIn: 3600, maxDownloads: 5 })", file_id
    )
    assert link["url"] == f"{demo.api}/s/{link['token']}"
    assert (link["state"], link["downloads"], link["max_downloads"]) == ("active", 0, 5)
    used = page.evaluate(FETCH, link["url"])
    assert used["status"] == 200, used
    assert used["redirected"] is True
    assert used["url"].startswith(demo.s3.endpoint_url), used["url"]
    assert base64.b64decode(used["body"]) == data

    # Listed with its use counted, never with its token.
    listed = page.evaluate("(id) => window.owner.links(id)", file_id)
    [entry] = listed
    assert entry["id"] == link["id"]
    assert (entry["state"], entry["downloads"]) == ("active", 1)
    assert "token" not in entry
    assert "url" not in entry
    assert link["token"] not in str(listed)

    # Revoked: the same URL now answers the service's 404.
    revoked = page.evaluate("([id, l]) => window.owner.revokeLink(id, l)", [file_id, link["id"]])
    assert revoked is None
    dead = page.evaluate(FETCH, link["url"])
    assert (dead["status"], dead["redirected"], dead["code"]) == (404, False, "not_found")
    states = page.evaluate("(id) => window.owner.links(id)", file_id)
    assert [item["state"] for item in states] == ["revoked"]

    # Before a grant, the other subject neither finds nor downloads the file.
    ids = [file_id, "not-a-uuid"]
    before = page.evaluate("(ids) => window.other.downloadMany(ids)", ids)
    assert [item["problem"]["code"] for item in before] == ["not_found", "not_found"]

    # A grant: the other subject finds the file among those shared with it, and downloads it
    # in a batch, whose answers follow the ids' order.
    grant = page.evaluate("([id, s]) => window.owner.share(id, { subject: s })", [file_id, other])
    assert (grant["subject"], grant["group"], grant["permission"]) == (other, None, "read")
    assert grant["active"] is True
    grants = page.evaluate("(id) => window.owner.grants(id)", file_id)
    assert [g["id"] for g in grants] == [grant["id"]]
    shared = page.evaluate("() => window.other.list({ shared: true })")
    assert [item["id"] for item in shared["items"]] == [file_id]
    own = page.evaluate("() => window.other.list()")
    assert own["items"] == []
    items = page.evaluate("(ids) => window.other.downloadMany(ids)", ids)
    assert [item["id"] for item in items] == ids
    assert items[0]["problem"] is None
    assert items[0]["method"] == "GET"
    assert items[0]["url"].startswith(demo.s3.endpoint_url)
    assert items[1]["url"] is None
    assert items[1]["problem"]["code"] == "not_found"
    assert items[1]["problem"]["status"] == 404
    fetched = page.evaluate(FETCH, items[0]["url"])
    assert fetched["status"] == 200
    assert base64.b64decode(fetched["body"]) == data

    # The history is the owner's to read; a grantee is told it may not (the error's code).
    refused = page.evaluate("(id) => window.attempt(() => window.other.accessHistory(id))", file_id)
    assert refused == {"error": {"name": "S3gateError", "code": "forbidden", "status": 403}}
    first = page.evaluate("(id) => window.owner.accessHistory(id, { limit: 2 })", file_id)
    assert first["next_cursor"]
    rest = page.evaluate(
        "([id, cursor]) => window.owner.accessHistory(id, { limit: 10, cursor })",
        [file_id, first["next_cursor"]],
    )
    assert rest["next_cursor"] is None
    history = first["items"] + rest["items"]
    # Newest first: the batch download, the link's one use (the revoked link issued none), the
    # upload; the batches that answered not_found issued nothing either.
    assert [(e["action"], e["actor_sub"], e["link_id"]) for e in history] == [
        ("download", other, None),
        ("link", None, link["id"]),
        ("upload", sub, None),
    ]
    for entry in history:
        assert entry["client_address"] == "127.0.0.1"
        assert entry["expires_at"] > entry["issued_at"]
        assert entry["part_number"] is None

    # Revoking the grant takes effect at once; revoking it again is the API's not_found.
    page.evaluate("([id, g]) => window.owner.revokeGrant(id, g)", [file_id, grant["id"]])
    after = page.evaluate("(ids) => window.other.downloadMany(ids)", ids)
    assert [item["problem"]["code"] for item in after] == ["not_found", "not_found"]
    again = page.evaluate(
        "([id, g]) => window.attempt(() => window.owner.revokeGrant(id, g))",
        [file_id, grant["id"]],
    )
    assert again == {"error": {"name": "S3gateError", "code": "not_found", "status": 404}}


def _wait_done(page: Any, name: str) -> str:
    row = page.locator(f'li.upload[data-filename="{name}"]')
    row.and_(page.locator("[data-state=done], [data-state=failed]")).wait_for(timeout=60_000)
    assert row.get_attribute("data-state") == "done", row.locator(".state").inner_text()
    file_id: str = row.get_attribute("data-file-id")
    return file_id


def test_the_demo_page_creates_copies_and_revokes_links_and_grants(
    demo: DemoServer, browser: Any, sub: str, tmp_path: Path, artifacts: Path
) -> None:
    other = new_sub()
    data = os.urandom(30_000)
    source = tmp_path / "report.bin"
    source.write_bytes(data)
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(demo.demo_url(sub))
    page.set_input_files("#files", str(source))
    file_id = _wait_done(page, "report.bin")
    row = page.locator(f'#file-rows tr[data-file-id="{file_id}"]')
    row.locator("td.status-available").wait_for()

    share = row.get_by_role("button", name="Share")
    assert share.get_attribute("aria-expanded") == "false"
    share.click()
    assert share.get_attribute("aria-expanded") == "true"
    panel = page.locator(f"#share-{file_id}")
    assert share.get_attribute("aria-controls") == f"share-{file_id}"

    # A link: its URL in a read-only field, then listed (without it) as active.
    panel.get_by_label("Max downloads").fill("3")
    panel.get_by_role("button", name="Create link").click()
    field = panel.get_by_label("Share URL")
    field.wait_for()
    url = field.input_value()
    assert url.startswith(f"{demo.api}/s/"), url
    assert field.get_attribute("readonly") is not None
    links = panel.locator(".link-list li")
    links.filter(has_text="active: 0/3 downloads").wait_for()
    panel.get_by_role("button", name="Copy").click()
    panel.locator(".copy-state").filter(has_text="copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == url

    # The URL works for anyone: a 307 to the store, which serves the uploaded bytes.
    used = httpx.get(url, timeout=10)
    assert used.status_code == 307
    location = used.headers["location"]
    assert location.startswith(demo.s3.endpoint_url)
    assert httpx.get(location, timeout=30).content == data

    # A grant to another subject, listed; the API agrees.
    panel.get_by_label("Subject (sub)").fill(other)
    panel.get_by_role("button", name="Grant", exact=True).click()
    panel.locator(".grant-list li").filter(has_text=f"{other}: read").wait_for()
    auth = {"Authorization": f"Bearer {demo.token(other)}"}
    shared = httpx.get(f"{demo.api}/files?shared=true", headers=auth, timeout=10).json()
    assert [item["id"] for item in shared["items"]] == [file_id]
    assert panel.locator(".share-error").is_hidden()

    # A refresh keeps the panel open, the URL still shown, and reloads its lists.
    page.get_by_role("button", name="Refresh").click()
    links.filter(has_text="active: 1/3 downloads").wait_for()
    assert page.locator(f"#share-{file_id}").count() == 1
    assert page.get_by_label("Share URL").input_value() == url
    assert share.get_attribute("aria-expanded") == "true"
    page.screenshot(path=str(artifacts / "sharing-demo.png"), full_page=True)

    # Revoked from the page: the link answers 404, the grantee loses the file.
    panel.get_by_role("button", name="Revoke link").click()
    links.filter(has_text="revoked").wait_for()
    assert panel.get_by_role("button", name="Revoke link").count() == 0
    assert httpx.get(url, timeout=10).status_code == 404
    panel.get_by_role("button", name=f"Revoke grant: {other}").click()
    panel.locator(".grant-list li").wait_for(state="detached")
    shared = httpx.get(f"{demo.api}/files?shared=true", headers=auth, timeout=10).json()
    assert shared["items"] == []

    # An API refusal shows its problem code in the panel.
    panel.get_by_label("Subject (sub)").fill(" ")
    panel.get_by_role("button", name="Grant", exact=True).click()
    panel.locator(".share-error").filter(has_text="validation_error").wait_for()

    # Share again closes the panel.
    share.click()
    panel.wait_for(state="detached")
    assert share.get_attribute("aria-expanded") == "false"
    context.close()
