"""The replica scenario: two s3gate containers behind nginx; one is killed, the other drained.

deploy/ci/replicas.sh builds the image, starts dockerd and runs this with the venv's Python:

    DOCKER_HOST=unix:///... .venv/bin/python deploy/ci/scenario.py --image local/s3gate:ci

It makes a throwaway PostgreSQL database, starts SeaweedFS and nginx (deploy/nginx.conf),
migrates with two `s3gate migrate` containers at once, and starts replicas A (two workers) and
B (one worker) with --network=host, read-only. Users then loop through nginx: create, PUT real
bytes to the presigned URL, complete, download and compare, sometimes delete or abandon. Mid-run
B gets SIGKILL and is started again; later A gets SIGTERM while requests are in flight on it.
Afterwards every file the users saw complete is checked against the ledger and the bucket, the
counts are printed, and the exit status is 1 if any check failed.

This file is the command line and the order of the steps; the parts are in
deploy/ci/replica_scenario/ (found beside this script, which is on sys.path when it runs), and
they take the database, port and process helpers from devkit/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from replica_scenario.checks import verify
from replica_scenario.common import ScenarioError, log
from replica_scenario.stack import Stack
from replica_scenario.traffic import traffic


@contextlib.contextmanager
def run_dir(path: str | None) -> Iterator[Path]:
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="s3gate-scenario-") as tmp:
        yield Path(tmp)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--image", default="local/s3gate:ci")
    parser.add_argument("--docker", default=shutil.which("docker") or "docker")
    parser.add_argument("--run-dir", help="where logs and state go (default: a temp folder)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "S3GATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a server where the scenario may create (and drop) a database",
    )
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--steady-seconds", type=float, default=6)
    parser.add_argument("--after-drain-seconds", type=float, default=4)
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args()

    started = time.monotonic()
    with run_dir(args.run_dir) as run, contextlib.ExitStack() as exits:
        stack = Stack(args, run, exits)
        try:
            stack.start_database()
            s3 = stack.start_s3()
            stack.write_env_file(s3)
            stack.migrate()
            stack.bucket_setup()
            for replica in (stack.a, stack.b):
                stack.start_replica(replica)
            for replica in (stack.a, stack.b):
                seconds = stack.wait_ready(replica)
                log(
                    f"replica {replica.name} ({replica.workers} worker(s), read-only) ready on "
                    f"{replica.address} after {seconds:.1f} s"
                )
            stack.start_nginx()
            setup_seconds = time.monotonic() - started
            log(f"{args.users} users through nginx")
            tally, timeline = asyncio.run(traffic(stack, args))
            reaped = stack.one_off("s3gate", "reap")
            log(f"s3gate reap: {reaped.stdout.strip()} (exit {reaped.returncode})")
            traffic_seconds = time.monotonic() - started - setup_seconds
            passed = verify(stack, tally, timeline) and reaped.returncode == 0
        except ScenarioError as exc:
            log(f"error: {exc}")
            return 1
        finally:
            for replica in (stack.a, stack.b):
                (run / f"{replica.name}.log").write_text(stack.logs(replica, lines=100000))
        if not passed:
            for replica in (stack.a, stack.b):
                print(f"--- last lines of replica {replica.name}'s log", flush=True)
                print(stack.logs(replica, lines=30), flush=True)
            errors = run / "nginx-error.log"
            if errors.exists():
                print("--- last lines of nginx's error log", flush=True)
                print("\n".join(errors.read_text().splitlines()[-30:]), flush=True)
    print(
        f"scenario: setup {setup_seconds:.0f} s, traffic and checks "
        f"{traffic_seconds:.0f} s: {'passed' if passed else 'FAILED'}",
        flush=True,
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
