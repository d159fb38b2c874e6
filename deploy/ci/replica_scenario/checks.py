"""The checks: what the clients saw against nginx's log, the ledger and the bucket; the counts
printed, each check printed ok or FAIL."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg

from devkit.postgres import libpq_url
from replica_scenario.clients import Call, Tally
from replica_scenario.common import BUCKET, GRACE_SECONDS, log
from replica_scenario.stack import Stack
from replica_scenario.traffic import Timeline


@dataclass
class Checks:
    results: list[tuple[bool, str]] = field(default_factory=list)

    def check(self, ok: bool, message: str) -> None:
        self.results.append((ok, message))
        print(f"  {'ok  ' if ok else 'FAIL'} {message}", flush=True)

    @property
    def passed(self) -> bool:
        return all(ok for ok, _ in self.results)


def classify(
    stack: Stack, tally: Tally, timeline: Timeline, entries: dict[str, dict[str, Any]]
) -> tuple[list[Call], list[str]]:
    """(tolerated, failures): a failed call is tolerated only when it is a POST nginx had sent
    to B and B died under it: nginx may not replay a POST it has sent."""
    tolerated, failures = [], []
    for call in tally.calls:
        if not call.failed:
            continue
        entry = entries.get(call.request_id)
        in_kill_window = (
            entry is not None
            and entry["started"] <= timeline.kill_done + 0.5
            and entry["time"] >= timeline.kill_started - 0.5
        )
        if (
            entry is not None
            and call.method == "POST"
            and entry["upstreams"] == [stack.b.address]
            and entry["upstream_status"] == "502"
            and in_kill_window
        ):
            tolerated.append(call)
        else:
            where = f"via {entry['upstream']}" if entry else "no nginx log entry"
            failures.append(f"{call.route}: {call.status or call.error} ({where})")
    return tolerated, failures


def verify(stack: Stack, tally: Tally, timeline: Timeline) -> bool:
    assert stack.s3 is not None
    log("checking what the clients saw against nginx's log, the ledger and the bucket")
    checks = Checks()
    entry_list = stack.nginx_entries()
    entries = {entry["request_id"]: entry for entry in entry_list}
    tolerated, failures = classify(stack, tally, timeline, entries)
    through_nginx = [c for c in tally.calls if c.request_id in entries]
    routes = Counter(c.route for c in tally.calls)
    rerouted = [e for e in entry_list if len(e["upstreams"]) > 1]

    print("\nrequests", flush=True)
    for route, count in sorted(routes.items()):
        print(f"  {count:7d}  {route}")
    print(f"  {len(tally.calls):7d}  API requests in all ({len(through_nginx)} through nginx)")
    print(f"  {sum(tally.s3.values()):7d}  S3 requests straight to the store: {dict(tally.s3)}")
    print(f"  {len(rerouted):7d}  passed by nginx to the other replica after a failure")
    print(f"  {tally.downloads_compared:7d}  downloads compared byte for byte")
    print("failures", flush=True)
    print(f"  {len(failures):7d}  that a retry-safe balancer could have rerouted")
    print(
        f"  {len(tolerated):7d}  POSTs in flight on the SIGKILLed replica (retried by the client)"
    )
    print(f"  {len(tally.problems):7d}  other problems (wrong status, bytes, S3 refusals)")
    for line in (failures + tally.problems)[:20]:
        print(f"           {line}")

    # a DELETE answered 404 is fine only as nginx's replay of one the killed replica had done
    unexplained_404s = [
        c for c in tally.delete_404s if len(entries.get(c.request_id, {}).get("upstreams", [])) < 2
    ]

    # kill and drain, from nginx's side
    drain = timeline.drain
    after_term = [e for e in entry_list if e["started"] >= drain.term_at + 1.0]
    on_draining = [e for e in after_term if e["upstreams"][-1:] == [stack.a.address]]
    b_after_restart = stack.served_by(stack.b, timeline.restarted_ready, drain.term_at)
    health = stack.docker(
        "inspect", "--format", "{{.State.Health.Status}}", stack.b.container, check=False
    ).stdout.strip()

    # the ledger and the bucket
    with psycopg.connect(libpq_url(stack.database_url)) as conn:
        rows = {
            str(row[0]): (row[1], row[2], row[3])
            for row in conn.execute("SELECT id, status, size, object_key FROM files").fetchall()
        }
    objects: dict[str, int] = {}
    paginator = stack.s3.client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            objects[item["Key"]] = item["Size"]
    statuses = Counter(status for status, _, _ in rows.values())
    live = {fid: v for fid, v in tally.completed.items() if fid not in tally.deleted}
    live_ok = [
        fid
        for fid, (size, _) in live.items()
        if fid in rows
        and rows[fid][0] == "available"
        and objects.get(rows[fid][2]) == size == rows[fid][1]
    ]
    available_keys = {key: size for status, size, key in rows.values() if status == "available"}
    available_without_object = [k for k, size in available_keys.items() if objects.get(k) != size]
    gone = tally.deleted | tally.abandoned
    gone_ok = [fid for fid in gone if fid in rows and rows[fid][0] == "deleted"]
    stray_objects = [key for key in objects if key not in available_keys]

    print("ledger and bucket", flush=True)
    print(f"  {len(rows):7d}  ledger rows: {dict(sorted(statuses.items()))}")
    print(f"  {len(objects):7d}  objects in the bucket")
    print(f"  {len(live):7d}  files the clients saw complete and did not delete")
    print(f"  {len(gone):7d}  files the clients deleted ({len(tally.deleted)}) or abandoned")
    t0 = timeline.traffic_started
    print(
        f"kill: B got SIGKILL at +{timeline.kill_started - t0:.1f} s, was ready again at "
        f"+{timeline.restarted_ready - t0:.1f} s and served {len(b_after_restart)} requests "
        "before the drain"
    )
    print(
        f"drain: A got SIGTERM at +{drain.term_at - t0:.1f} s with {drain.in_flight} "
        f"requests in flight on it, {drain.finished_ok} "
        f"finished OK ({drain.finished_after_term} after the signal); A exited "
        f"{drain.exit_code} after {drain.exit_seconds:.1f} s (grace {GRACE_SECONDS} s); "
        f"{len(after_term)} requests started later than 1 s after it, "
        f"{len(on_draining)} of them on A"
    )
    print("checks", flush=True)
    checks.check(
        not failures, f"no failed request a balancer could have rerouted ({len(failures)})"
    )
    checks.check(not tally.problems, f"no other problem ({len(tally.problems)})")
    checks.check(
        not unexplained_404s, f"every DELETE 404 was an nginx replay ({len(tally.delete_404s)})"
    )
    checks.check(len(tally.completed) > 100, f"real traffic: {len(tally.completed)} completed")
    checks.check(
        len(live_ok) == len(live),
        f"every live completed upload has an available row and its object "
        f"({len(live_ok)}/{len(live)})",
    )
    checks.check(
        not available_without_object,
        f"no available row without its object ({len(available_without_object)})",
    )
    checks.check(
        len(gone_ok) == len(gone), f"deleted and abandoned files are `deleted` ({len(gone_ok)})"
    )
    checks.check(not stray_objects, f"no object without an available row ({len(stray_objects)})")
    checks.check(statuses.get("pending", 0) == 0, "no upload left pending")
    checks.check(len(b_after_restart) > 0, "the restarted replica took traffic before the drain")
    checks.check(
        drain.finished_ok == drain.in_flight and drain.finished_after_term == drain.in_flight,
        f"requests in flight at SIGTERM finished ({drain.finished_ok}/{drain.in_flight})",
    )
    checks.check(
        not on_draining and len(after_term) > 0,
        f"new requests after SIGTERM went to B ({len(after_term) - len(on_draining)}"
        f"/{len(after_term)})",
    )
    checks.check(
        drain.exit_code == 0 and drain.exit_seconds < GRACE_SECONDS,
        f"A exited cleanly within the grace period ({drain.exit_seconds:.1f} s)",
    )
    checks.check(health == "healthy", f"Docker's HEALTHCHECK reports B {health!r}")
    return checks.passed
