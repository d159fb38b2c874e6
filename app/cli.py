"""The `s3gate` command: serve, migrate, dev, reap, verify, deliver, events list|replay,
webhook-secret, bucket check|setup, iam-policy, upload, download, share, token (and --version).

Over 350 lines on purpose: each command is a thin function over the room that does the work,
and the parser at the bottom is their one table; splitting it would scatter that table."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from app.auth import TokenVerifier, mint_token
from app.config import AuthSettings, ConfigError, MigrateSettings, Settings, load_settings
from app.logs import configure_logging, logging_config
from app.migrate import run_migrations
from app.serving import run_server

if TYPE_CHECKING:
    from app.client import S3gateClient
    from app.storage.posture import Check

DEV_BUCKET = "s3gate-dev"
DEV_ACCESS_KEY = "S3GATEDEV"
DEV_TOKEN_TTL_SECONDS = 12 * 3600


def installed_version() -> str:
    """The version of the installed s3gate distribution (what pip and bug reports name)."""
    try:
        return metadata.version("s3gate")
    except metadata.PackageNotFoundError:  # app/ imported from a checkout that was never installed
        return "unknown (not installed)"


def cmd_serve(args: argparse.Namespace) -> int:
    from app.metrics import share_metrics_between_workers

    # Flags win over the S3GATE_* settings (which configure a container), and go through the
    # same validation: a bad flag is named like the variable it stands for.
    flags = {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "proxy_headers": args.proxy_headers,
        "forwarded_allow_ips": args.forwarded_allow_ips,
    }
    settings = load_settings(Settings, **{k: v for k, v in flags.items() if v is not None})
    TokenVerifier(settings)  # key material that cannot verify anything fails here, not per worker
    configure_logging(settings.log_level, settings.log_format)
    if settings.migrate_on_start:
        run_migrations(settings.database_url)
    share_metrics_between_workers(settings.workers)  # before the workers start: read at import
    return run_server(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        proxy_headers=settings.proxy_headers,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        log_level=settings.log_level,
        # Applied by each worker process: our format for our lines and uvicorn's own.
        log_config=logging_config(settings.log_level, settings.log_format),
        # Our s3gate.access line replaces uvicorn's, which would print query strings.
        access_log=False,
    )


def cmd_migrate(_: argparse.Namespace) -> int:
    settings = load_settings(MigrateSettings)
    configure_logging(settings.log_level, settings.log_format)
    run_migrations(settings.database_url)
    print("ledger schema is up to date")
    return 0


def cmd_reap(args: argparse.Namespace) -> int:
    from app.lifespan import open_use_cases

    settings = load_settings(Settings)
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> int:
        async with open_use_cases(settings) as (_, use_cases):
            report = await use_cases.reaper.reap(
                batch_size=args.batch_size or settings.reaper_batch_size
            )
        print(
            f"expired={report.expired} purged={report.purged} failed={report.failed} "
            f"watched={report.watched}"
        )
        return 1 if report.failed else 0

    return asyncio.run(run())


def cmd_deliver(args: argparse.Namespace) -> int:
    from app.lifespan import open_use_cases

    settings = load_settings(Settings)
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> int:
        async with open_use_cases(settings) as (_, use_cases):
            if use_cases.dispatcher is None:
                print("no webhook endpoint is configured (S3GATE_WEBHOOK_ENDPOINTS)")
                return 0
            report = await use_cases.dispatcher.drain(args.batch_size)
        print(
            f"claimed={report.claimed} delivered={report.delivered} retried={report.retried} "
            f"failed={report.failed}"
        )
        return 0

    return asyncio.run(run())


def cmd_verify(args: argparse.Namespace) -> int:
    from app.lifespan import open_use_cases

    settings = load_settings(Settings)
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> int:
        async with open_use_cases(settings) as (_, use_cases):
            report = await use_cases.verification.drain()
        print(f"claimed={report.claimed} finished={report.finished} retried={report.retried}")
        return 1 if report.retried else 0

    return asyncio.run(run())


def cmd_events(args: argparse.Namespace) -> int:
    import uuid

    from app.errors import AppError
    from app.lifespan import open_use_cases

    settings = load_settings(Settings)
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> int:
        async with open_use_cases(settings) as (_, use_cases):
            feed = use_cases.events
            if args.action == "list" and args.failed:
                for delivery in await feed.failed(args.limit):
                    print(
                        f"event_seq={delivery.event_seq} endpoint={delivery.endpoint} "
                        f"attempts={delivery.attempts} last_status={delivery.last_status} "
                        f"error={json.dumps(delivery.last_error)}"
                    )
            elif args.action == "list":
                for event, deliveries in await feed.recent(after=args.after, limit=args.limit):
                    sent = " ".join(f"{d.endpoint}:{d.status}" for d in deliveries) or "-"
                    print(
                        f"{event.seq} {event.id} {event.type} file={event.file_id} "
                        f"owner={json.dumps(event.owner_id)} deliveries={sent}"
                    )
            elif args.failed:
                print(f"due again: {await feed.replay_failed()}")
            elif args.event_id:
                try:
                    event_id = uuid.UUID(args.event_id)
                except ValueError:
                    print("s3gate events replay: the event id is a UUID", file=sys.stderr)
                    return 2
                try:
                    print(f"due again: {await feed.replay(event_id)}")
                except AppError as exc:
                    print(f"s3gate events replay: {exc.detail}", file=sys.stderr)
                    return 1
            else:
                print("s3gate events replay: name an event id or --failed", file=sys.stderr)
                return 2
        return 0

    return asyncio.run(run())


def cmd_webhook_secret(args: argparse.Namespace) -> int:
    from app.webhooks import generate_secret

    print(generate_secret())
    return 0


def _print_checks(checks: Sequence[Check]) -> None:
    for check in checks:
        print(f"{check.state:<12} {check.name:<28} {check.detail}")


def cmd_bucket(args: argparse.Namespace) -> int:
    from app.lifespan import s3_clients, signer_factory
    from app.storage.posture import check_bucket, setup_bucket
    from app.usecases.probe import probe, resolve_profile

    settings = load_settings(Settings)
    storage_client, signing_client, credentials = s3_clients(settings)
    trials: list[Check] = []
    try:
        if args.action == "setup":
            checks = setup_bucket(storage_client, settings)
        else:
            signer_for = signer_factory(signing_client, credentials, settings)
            profile, how = resolve_profile(storage_client, signer_for, settings)
            print(f"store profile: {profile.name}, {how}: {profile.summary()}")
            checks = check_bucket(storage_client, settings, profile)
            if args.probe:
                trials = probe(storage_client, signer_for, settings, profile)
    finally:
        storage_client.close()
        signing_client.close()
    _print_checks([*checks, *trials])
    unsupported = [c.name for c in checks if c.state == "unsupported"]
    if unsupported:
        print(f"not done by this store (set them up by other means): {', '.join(unsupported)}")
    proven = [c.name for c in trials if c.state == "unsupported"]
    if proven:
        print(f"not enforced by this store, so s3gate does not rely on it: {', '.join(proven)}")
    return 1 if any(c.state == "problem" for c in [*checks, *trials]) else 0


def cmd_iam_policy(_: argparse.Namespace) -> int:
    from app.profiles import PROFILES, UNKNOWN, vendor_profile
    from app.storage.posture import iam_policy

    settings = load_settings(Settings)
    # Offline: auto is what the endpoint's vendor needs, or the prove-everything profile's.
    profile = (
        vendor_profile(settings.s3_endpoint_url) or UNKNOWN
        if settings.store_profile == "auto"
        else PROFILES[settings.store_profile]
    )
    print(json.dumps(iam_policy(settings, profile), indent=2))
    return 0


def _terminal_progress(label: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        print(f"\r{label} {percent:3d}% ({done}/{total} bytes)", end="", file=sys.stderr)
        if done >= total:
            print(file=sys.stderr)

    return show


def _client(args: argparse.Namespace) -> S3gateClient:
    from app.client import S3gateClient

    token = args.token or os.environ.get("S3GATE_TOKEN")
    if not token:
        raise ConfigError("S3GATE_TOKEN: a bearer token is needed (or --token)")
    return S3gateClient(args.api, token)


def cmd_upload(args: argparse.Namespace) -> int:
    import httpx

    from app.client import ApiError
    from app.client_state import UploadRecords, default_state_dir

    def resuming(file_id: str, held: int, count: int | None) -> None:
        parts = f" ({held} of {count} parts already stored)" if count is not None else ""
        print(f"s3gate: resuming upload {file_id}{parts}", file=sys.stderr, flush=True)

    client = _client(args)
    records = UploadRecords(Path(args.state_dir) if args.state_dir else default_state_dir())
    try:
        file = client.upload(
            Path(args.file),
            content_type=args.content_type,
            progress=_terminal_progress("upload"),
            records=records,
            on_resume=resuming,
        )
    except (ApiError, OSError, httpx.HTTPError) as exc:
        # httpx's transport errors name the failure, not the (presigned) URL; only
        # raise_for_status, which the client never calls, would put a URL in a message.
        print(f"s3gate: upload failed: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(file["id"])
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    import httpx

    from app.client import ApiError

    client = _client(args)
    progress = _terminal_progress("download")
    try:
        if args.output == "-":
            client.download_to(args.id, sys.stdout.buffer, progress=progress)
            sys.stdout.buffer.flush()
            written = None
        else:
            written = client.download(
                args.id, Path(args.output) if args.output else None, progress=progress
            )
    except (ApiError, OSError, httpx.HTTPError) as exc:
        print(f"s3gate: download failed: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if written is not None:  # with `-o -`, stdout carries the bytes and nothing else
        print(written)
    return 0


def cmd_share(args: argparse.Namespace) -> int:
    import httpx

    from app.client import ApiError

    granting = args.to is not None or args.group is not None
    misplaced = [
        flag
        for flag, value, fits in (
            ("--permission", args.permission, granting),
            ("--expires-at", args.expires_at, granting),
            ("--expires-in", args.expires_in, args.link),
            ("--max-downloads", args.max_downloads, args.link),
        )
        if value is not None and not fits
    ]
    if misplaced:
        modes = "--to/--group" if misplaced[0] in ("--permission", "--expires-at") else "--link"
        print(f"s3gate share: {misplaced[0]} goes with {modes} only", file=sys.stderr)
        return 2
    if args.link and args.expires_in is None:
        print("s3gate share: --link needs --expires-in SECONDS", file=sys.stderr)
        return 2
    client = _client(args)
    try:
        if granting:
            grant = client.share(
                args.id,
                subject=args.to,
                group=args.group,
                permission=args.permission or "read",
                expires_at=args.expires_at,
            )
            print(json.dumps(grant))
        elif args.link:
            link = client.create_link(
                args.id, expires_in=args.expires_in, max_downloads=args.max_downloads
            )
            uses = f", {link['max_downloads']} downloads" if link["max_downloads"] else ""
            # The URL is the secret: alone on stdout, for `URL=$(s3gate share ...)`.
            print(f"s3gate: link {link['id']} until {link['expires_at']}{uses}", file=sys.stderr)
            print(link["url"])
        elif args.list:
            for grant in client.grants(args.id):
                print(json.dumps({"kind": "grant", **grant}))
            for link in client.links(args.id):
                listed = {k: v for k, v in link.items() if k not in ("token", "url")}
                print(json.dumps({"kind": "link", **listed}))
        elif args.revoke_grant is not None:
            client.revoke_grant(args.id, args.revoke_grant)
            print(f"s3gate: revoked grant {args.revoke_grant}", file=sys.stderr)
        else:
            client.revoke_link(args.id, args.revoke_link)
            print(f"s3gate: revoked link {args.revoke_link}", file=sys.stderr)
    except (ApiError, httpx.HTTPError) as exc:
        print(f"s3gate: share failed: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


_OWN_CLAIMS = frozenset({"sub", "iat", "exp", "scope"})


def _claim(text: str) -> tuple[str, object]:
    """A `--claim NAME=JSON` (`groups=["a","b"]`, `n=5`); a value that is not JSON is taken
    as a plain string (`tier=gold`)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=JSON")
    if name in _OWN_CLAIMS:
        # Set by --sub, --ttl and --admin: a --claim would silently override what they say.
        raise argparse.ArgumentTypeError(f"{name!r} is set by --sub, --ttl or --admin")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def _secret_file(path: Path, nbytes: int) -> str:
    """Read a dev secret, creating it (owner-only) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(nbytes))
        path.chmod(0o600)
    return path.read_text().strip()


def cmd_token(args: argparse.Namespace) -> int:
    overrides = {}
    if args.secret_file:
        overrides["jwt_secret"] = Path(args.secret_file).read_text().strip()
    hint = "S3GATE_JWT_SECRET: minting needs the HMAC secret (set it, or pass --secret-file)"
    try:
        settings = load_settings(AuthSettings, **overrides)
    except ConfigError as exc:
        if overrides:
            raise
        raise ConfigError(f"{exc}\n{hint}") from None
    if settings.jwt_secret is None:
        raise ConfigError(hint)
    print(
        mint_token(
            settings.jwt_secret.get_secret_value(),
            args.sub,
            algorithm=settings.jwt_algorithms[0],
            ttl_seconds=args.ttl,
            admin_scope=settings.admin_scope if args.admin else None,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            extra_claims=dict(args.claim) if args.claim else None,
        )
    )
    return 0


def _walkthrough(
    api: str, token: str, s3_url: str, database_url: str, state: Path, *, demo: bool
) -> str:
    get = "python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))%s)'"
    # The token rides in the fragment, which browsers never send to a server.
    demo_line = f"\n  demo page (token filled in): {api}/demo/#token={token}" if demo else ""
    return f"""
s3gate dev is up: {api}   (interactive API docs: {api}/docs){demo_line}
  embedded S3 (SeaweedFS): {s3_url}, bucket {DEV_BUCKET}
  ledger: {database_url}
  Ctrl-C stops the service and the S3 server.

A dev token (sub=dev, valid {DEV_TOKEN_TTL_SECONDS // 3600} h); more with
  .venv/bin/s3gate token --sub alice --secret-file {state / "jwt-secret"}

Upload and download a file, in another terminal:

export API={api} TOKEN={token}
printf 'hello from s3gate\\n' > hello.txt; SIZE=$(wc -c < hello.txt | tr -d ' ')
curl -s -X POST "$API/uploads" -H "Authorization: Bearer $TOKEN" \\
  -H 'Content-Type: application/json' \\
  -d '{{"filename": "hello.txt", "content_type": "text/plain", "size": '"$SIZE"'}}' > upload.json
ID=$({get % '["file"]["id"]'} upload.json)
URL=$({get % '["upload"]["url"]'} upload.json)
curl -sf -X PUT "$URL" -H 'Content-Type: text/plain' -H 'If-None-Match: *' --data-binary @hello.txt
curl -s -X POST "$API/uploads/$ID/complete" -H "Authorization: Bearer $TOKEN"; echo
curl -s "$API/downloads/$ID" -H "Authorization: Bearer $TOKEN" > download.json
curl -s "$({get % '["url"]'} download.json)"
"""


def cmd_dev(args: argparse.Namespace) -> int:
    from app.devstack import embedded_s3
    from app.main import create_app
    from app.storage import ensure_bucket

    # SIGTERM unwinds like Ctrl-C, so the embedded S3 server below is stopped too. (uvicorn
    # re-raises the signal it caught once it has shut down; the default action would end the
    # process before the `with` below could stop SeaweedFS, which runs in its own session.)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    state = Path(args.state_dir).resolve()
    jwt_secret = _secret_file(state / "jwt-secret", 48)
    s3_secret = _secret_file(state / "s3-secret", 24)
    api = f"http://{args.host}:{args.port}"
    with embedded_s3(state / "s3", access_key=DEV_ACCESS_KEY, secret_key=s3_secret) as s3:
        # The embedded store and its keys replace whatever S3 settings the shell had.
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            os.environ.pop(name, None)
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": s3.access_key,
                "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                "S3GATE_S3_BUCKET": DEV_BUCKET,
                "S3GATE_S3_ENDPOINT_URL": s3.endpoint_url,
                "S3GATE_S3_PUBLIC_ENDPOINT_URL": s3.endpoint_url,
                "S3GATE_S3_ADDRESSING_STYLE": "path",
                "S3GATE_S3_REGION": s3.region,
                "S3GATE_JWT_SECRET": jwt_secret,
                "S3GATE_JWT_ALGORITHMS": "HS256",
            }
        )
        for name in ("S3GATE_JWT_PUBLIC_KEY", "S3GATE_JWT_JWKS_URL"):
            os.environ.pop(name, None)
        os.environ.setdefault("S3GATE_DATABASE_URL", f"sqlite:///{state / 's3gate.db'}")
        os.environ.setdefault("S3GATE_DEMO", "true")
        os.environ.setdefault("S3GATE_STORE_PROFILE", "seaweedfs")  # known: no startup probe
        settings = load_settings(Settings)
        configure_logging(settings.log_level)
        origins = [api, f"http://localhost:{args.port}", *settings.cors_origins]
        ensure_bucket(s3.client(), DEV_BUCKET, origins)
        run_migrations(settings.database_url)
        token = mint_token(
            jwt_secret,
            "dev",
            ttl_seconds=DEV_TOKEN_TTL_SECONDS,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        banner = _walkthrough(
            api, token, s3.endpoint_url, settings.database_url, state, demo=settings.demo
        )
        return run_server(
            create_app(settings),
            host=args.host,
            port=args.port,
            log_level="info",
            access_log=False,  # s3gate's own access line is on
            # Only once the port takes connections: a script that waits for the banner can
            # call the API right away. A startup that fails prints none.
            on_started=lambda: print(banner, flush=True),
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s3gate", description="Presigned S3 URLs for a private bucket, behind JWT auth."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve the API (settings from S3GATE_* / .env)")
    serve.add_argument("--host", help="address to listen on [S3GATE_HOST, default 127.0.0.1]")
    serve.add_argument("--port", type=int, help="port to listen on [S3GATE_PORT, default 8000]")
    serve.add_argument("--workers", type=int, help="worker processes [S3GATE_WORKERS, default 1]")
    serve.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        help="trust X-Forwarded-* from allowed proxies [S3GATE_PROXY_HEADERS, default off]",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        help="comma-separated proxies (addresses or networks) whose headers are trusted "
        "[S3GATE_FORWARDED_ALLOW_IPS, default 127.0.0.1]",
    )
    serve.set_defaults(handler=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply ledger migrations (alembic upgrade head)")
    migrate.set_defaults(handler=cmd_migrate)

    dev = sub.add_parser(
        "dev", help="run everything locally: SQLite ledger, embedded SeaweedFS S3, dev token"
    )
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--state-dir", default=".s3gate-dev", help="where dev data and secrets live")
    dev.set_defaults(handler=cmd_dev)

    reap = sub.add_parser(
        "reap",
        help="expire uploads past their deadline and remove orphaned objects (cron-safe: "
        "several runs at once never process a row twice)",
    )
    reap.add_argument(
        "--batch-size", type=int, default=0, help="rows per run [S3GATE_REAPER_BATCH_SIZE]"
    )
    reap.set_defaults(handler=cmd_reap)

    deliver = sub.add_parser(
        "deliver",
        help="make the webhook deliveries that are due, then exit (cron-safe: runs side by side "
        "never take the same delivery)",
    )
    deliver.add_argument("--batch-size", type=int, default=100, help="deliveries per claim")
    deliver.set_defaults(handler=cmd_deliver)

    verify = sub.add_parser(
        "verify",
        help="finish the files left `verifying` (whole-object checks, malware scans), then exit "
        "(cron-safe: runs side by side never take the same file)",
    )
    verify.set_defaults(handler=cmd_verify)

    webhook_secret = sub.add_parser(
        "webhook-secret", help="print a new webhook signing secret (whsec_..., 32 random bytes)"
    )
    webhook_secret.set_defaults(handler=cmd_webhook_secret)

    events = sub.add_parser("events", help="the outbox: list events, replay deliveries")
    events.add_argument(
        "action",
        choices=["list", "replay"],
        help="list: events with their deliveries (--failed: dead-lettered deliveries); "
        "replay ID: deliver one event again; replay --failed: every dead-lettered delivery",
    )
    events.add_argument("event_id", nargs="?", help="replay: the event's id")
    events.add_argument("--failed", action="store_true", help="dead-lettered deliveries")
    events.add_argument("--after", type=int, default=0, help="list: events after this seq")
    events.add_argument("--limit", type=int, default=50, help="list: at most this many")
    events.set_defaults(handler=cmd_events)

    bucket = sub.add_parser("bucket", help="check or set up the bucket's posture")
    bucket.add_argument(
        "action",
        choices=["check", "setup"],
        help="check: report ok / problem / unsupported per check (exit 1 on a problem); "
        "setup: apply CORS, public access block, encryption and the multipart lifecycle rule",
    )
    bucket.add_argument(
        "--probe",
        action="store_true",
        help="check: also try, on probe keys under the prefix and with the service's own URLs, "
        "what s3gate relies on (refused tampering, create-only, ACLs, expiry, forms, "
        "multipart, CORS), then clean up",
    )
    bucket.set_defaults(handler=cmd_bucket)

    iam = sub.add_parser(
        "iam-policy", help="print the least-privilege IAM policy for the bucket and key prefix"
    )
    iam.set_defaults(handler=cmd_iam_policy)

    api_default = os.environ.get("S3GATE_API_URL", "http://127.0.0.1:8000")
    upload = sub.add_parser(
        "upload",
        help="upload FILE through the API and its presigned URLs; prints the file id",
        description="Upload FILE (one PUT, or parts when the server says multipart) and print "
        "its id. A run that was stopped (Ctrl-C, kill, a lost connection) is resumed by running "
        "the same command again: the same file id, and only the parts the store does not hold "
        "yet. What a rerun needs is saved per upload until it completes; a file that changed "
        "since (size, mtime or content) is uploaded anew.",
    )
    upload.add_argument("file")
    upload.add_argument("--content-type", help="default: guessed from the name")
    upload.add_argument(
        "--state-dir",
        help="where unfinished uploads are remembered (one owner-only file each) "
        "[default: $XDG_STATE_HOME/s3gate/uploads, else ~/.local/state/s3gate/uploads]",
    )
    upload.set_defaults(handler=cmd_upload)
    download = sub.add_parser(
        "download",
        help="download file ID through a presigned URL; prints the path written",
        description="Download file ID and print the path written; with `-o -` the bytes go "
        "to stdout and nothing else does (progress is on stderr).",
    )
    download.add_argument("id")
    download.add_argument(
        "-o", "--output", help="where to write; - for stdout [default: the file's name, here]"
    )
    download.set_defaults(handler=cmd_download)
    share = sub.add_parser(
        "share",
        help="share file ID: grant a subject or group, make a share link, list, revoke",
        description="Share file ID (yours, or any with an admin token). --to/--group print the "
        "grant as one JSON line; --link prints only the link's URL on stdout (it is the "
        "secret: anyone holding it gets the bytes), the rest on stderr; --list prints the "
        "grants and links as JSON lines (never a link's token). API errors: their code and "
        "detail on stderr, exit status 1.",
    )
    share.add_argument("id")
    mode = share.add_mutually_exclusive_group(required=True)
    mode.add_argument("--to", metavar="SUB", help="grant the subject (a token's sub)")
    mode.add_argument("--group", metavar="G", help="grant the group (S3GATE_GROUP_CLAIM)")
    mode.add_argument("--link", action="store_true", help="create a share link")
    mode.add_argument("--list", action="store_true", help="list the grants and links")
    mode.add_argument("--revoke-grant", metavar="GRANT_ID", help="revoke a grant")
    mode.add_argument("--revoke-link", metavar="LINK_ID", help="revoke a share link")
    share.add_argument(
        "--permission", choices=["read", "delete"], help="--to/--group [default: read]"
    )
    share.add_argument(
        "--expires-at", metavar="RFC3339", help="--to/--group: when the grant stops working"
    )
    share.add_argument(
        "--expires-in", type=int, metavar="SECONDS", help="--link: its lifetime (required)"
    )
    share.add_argument(
        "--max-downloads", type=int, metavar="N", help="--link: uses allowed [default: no cap]"
    )
    share.set_defaults(handler=cmd_share)
    for command in (upload, download, share):
        command.add_argument("--api", default=api_default, help="[S3GATE_API_URL]")
        command.add_argument("--token", help="bearer token [S3GATE_TOKEN]")

    token = sub.add_parser("token", help="mint a development JWT with the HMAC secret")
    token.add_argument("--sub", required=True, help="the owner id (JWT sub)")
    token.add_argument("--admin", action="store_true", help="grant the admin scope")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.add_argument("--secret-file", help="read the HMAC secret from this file")
    token.add_argument(
        "--claim",
        action="append",
        type=_claim,
        metavar="NAME=JSON",
        help='add a claim (repeatable), e.g. groups=\'["a","b"]\'; a value that is not '
        "JSON is a string",
    )
    token.set_defaults(handler=cmd_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `s3gate` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        print(f"s3gate: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
