"""s3gate's benchmark harness: `.venv/bin/python -m bench.run [--quick]` (see bench/README.md).

Starts one embedded SeaweedFS, s3gate (one uvicorn worker per ledger backend, each its own
process, started as production starts it: JSON access log on, rate limits off) and the peer (the
seeds' design in Node: Express + jsonwebtoken + the AWS SDK presigner, bench/peers/express),
drives each with wrk from a separate process, and prints one table of req/s, p50 and p99 with
the ratio of each s3gate route to the baseline, that server's own `GET /healthz`, and of the
upload path to the peer's, all measured in the same run. Then RSS per worker, time to ready, a
signer micro-benchmark and the issue's targets (PASS/MISS, informational only).

Exit status: 0 when everything ran (whatever the timings), 1 when something broke (a server
did not start, a load run had errors, preparation failed), 2 when wrk is missing or the
arguments are wrong.

This module is the command line and the order of a run; the rest is by role: bench/common.py
(names, the Plan), servers.py (the processes under load), wrk.py (running and reading wrk),
prepare.py (files made through the API), plan.py (the peer, s3gate per backend, the sustained
run), signer_bench.py and report.py (the printout, the targets, the JSON). Throwaway databases,
ports, the clean environment and process supervision come from devkit/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from app.auth import mint_token
from app.devstack import EmbeddedS3, embedded_s3
from app.migrate import run_migrations
from bench.common import BUCKET, OWNER, BenchError, Plan
from bench.plan import bench_peer, bench_s3gate, bench_sustained_sqlite
from bench.report import Report, json_report, load_average, print_report, tree_line
from bench.signer_bench import signer_benchmark
from devkit.env import clean_env
from devkit.postgres import PostgresUnreachable, throwaway_database

JWT_SECRET_CHARS = 48
POSTGRES_DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _s3gate_env(
    base: dict[str, str], s3: EmbeddedS3, jwt_secret: str, database_url: str
) -> dict[str, str]:
    return {
        **base,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "S3GATE_S3_BUCKET": BUCKET,
        "S3GATE_S3_ENDPOINT_URL": s3.endpoint_url,
        "S3GATE_S3_REGION": s3.region,
        "S3GATE_S3_ADDRESSING_STYLE": "path",
        "S3GATE_JWT_SECRET": jwt_secret,
        "S3GATE_DATABASE_URL": database_url,
        # As deployed: one JSON access line per request (to the server's log file here).
        "S3GATE_LOG_LEVEL": "info",
        "S3GATE_LOG_FORMAT": "json",
        # One owner drives the whole load; the issue measures with rate limits off.
        "S3GATE_RATE_LIMIT_PER_MINUTE": "0",
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="every part for about a second (CI: proves the harness works)",
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=None,
        help="seconds per load run (default 10; 1 with --quick)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="seconds of warm-up per endpoint (default 1; 0 with --quick)",
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="concurrent connections (default 64)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="wrk threads (default 1: the other core is the server's)",
    )
    parser.add_argument(
        "--backends",
        default="sqlite,postgres",
        help="ledger backends to run (default sqlite,postgres)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("S3GATE_BENCH_POSTGRES_URL")
        or os.environ.get("S3GATE_TEST_POSTGRES_URL")
        or POSTGRES_DEFAULT_URL,
        help="admin URL of a PostgreSQL server; a throwaway database is created and dropped",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the results as JSON to this file"
    )
    parser.add_argument(
        "--sustained",
        type=int,
        default=None,
        help="seconds of sustained uploads on a fresh SQLite ledger, sampling its WAL "
        "(default 30; 2 with --quick; 0 skips it)",
    )
    return parser


def _postgres_database(stack: contextlib.ExitStack, admin_url: str) -> str | None:
    """A throwaway database on admin_url's server, dropped when `stack` closes (None if the
    server is unreachable)."""

    def drop_failed(name: str, exc: Exception) -> None:
        print(f"postgres: could not drop {name} ({type(exc).__name__}); drop it by hand")

    try:
        return stack.enter_context(
            throwaway_database(
                admin_url, prefix="s3gate_bench", connect_timeout=3, on_drop_error=drop_failed
            )
        )
    except PostgresUnreachable as exc:
        reason = type(exc.__cause__).__name__
        print(f"postgres: not reachable ({reason}); skipping that backend")
        return None


def _describe(exc: Exception) -> str:
    return str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - {"sqlite", "postgres"})
    if unknown:
        print(f"bench: unknown backend(s) {unknown}; use sqlite and/or postgres", file=sys.stderr)
        return 2
    if args.connections < args.threads or args.threads < 1:
        print("bench: --connections must be >= --threads >= 1", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    duration = args.duration if args.duration is not None else (1 if args.quick else 10)
    if args.sustained is None:
        args.sustained = 2 if args.quick else 30
    plan = Plan(
        duration=max(1, duration),
        warmup=max(0, args.warmup if args.warmup is not None else (0 if args.quick else 1)),
        connections=args.connections,
        threads=args.threads,
        download_files=20 if args.quick else 50,
        complete_probe_ids=0 if args.quick else 600,
        complete_ids=300,
        signer_iterations=200 if args.quick else 2000,
    )
    # SIGTERM unwinds like Ctrl-C, so every process we started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    report = Report(tree=tree_line(), load_average=load_average())
    # Our environment without the caller's S3GATE_/AWS_ settings (the bench sets its own).
    base_env = clean_env(keep=("S3GATE_BENCH_", "S3GATE_TEST_"), isolate_aws=True)
    # The signer benchmark runs in this process: it sees the same variables as the servers.
    os.environ.clear()
    os.environ.update(base_env)

    with (
        tempfile.TemporaryDirectory(prefix="s3gate-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        print(f"bench: starting SeaweedFS in {workdir} ...", flush=True)
        s3 = stack.enter_context(
            embedded_s3(
                workdir / "s3", access_key="S3GATEBENCH", secret_key=secrets.token_urlsafe(24)
            )
        )
        s3.client().create_bucket(Bucket=BUCKET)
        jwt_secret = secrets.token_urlsafe(JWT_SECRET_CHARS)
        token = mint_token(jwt_secret, OWNER, ttl_seconds=6 * 3600)
        sqlite_url = f"sqlite:///{workdir / 'ledger.db'}"
        signer_env = _s3gate_env(base_env, s3, jwt_secret, sqlite_url)
        os.environ.update(signer_env)

        try:
            print("bench: the peer (Express + jsonwebtoken + AWS SDK presigner) ...", flush=True)
            bench_peer(report, plan, signer_env, token, workdir)
        except Exception as exc:  # broken, not slow: recorded, the other parts still run
            report.problems.append(f"peer: {_describe(exc)}")

        for backend in backends:
            try:
                url = (
                    sqlite_url
                    if backend == "sqlite"
                    else _postgres_database(stack, args.postgres_url)
                )
                if url is None:
                    report.notes.append("postgres: server not reachable; backend skipped")
                    continue
                print(f"bench: s3gate on {backend} ...", flush=True)
                run_migrations(url)
                env = _s3gate_env(base_env, s3, jwt_secret, url)
                bench_s3gate(report, plan, backend, env, token, workdir)
            except Exception as exc:  # broken, not slow: recorded, the other parts still run
                report.problems.append(f"{backend}: {_describe(exc)}")

        if "sqlite" in backends and args.sustained:
            print(f"bench: sustained {args.sustained} s of uploads on SQLite ...", flush=True)
            try:
                env = _s3gate_env(base_env, s3, jwt_secret, sqlite_url)
                bench_sustained_sqlite(report, plan, env, token, workdir, args.sustained)
            except Exception as exc:  # broken, not slow
                report.problems.append(f"sustained sqlite: {_describe(exc)}")

        print("bench: signer micro-benchmark ...", flush=True)
        try:
            report.signer = signer_benchmark(plan.signer_iterations)
        except Exception as exc:  # broken, not slow
            report.problems.append(f"signer benchmark: {_describe(exc)}")

    for load in report.loads:
        if load.error_count:
            report.problems.append(f"{load.server} {load.label}: {load.error_count} error(s)")
    print_report(report, plan, started)
    if args.json is not None:
        args.json.write_text(json.dumps(json_report(report, plan), indent=2) + "\n")
    if report.problems:
        print("\nbench: FAILED", file=sys.stderr)
        for problem in report.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
