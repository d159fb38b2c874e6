"""What verifying a declared SHA-256 by reading the object costs (issue 13, item 1): completion
does this where the store keeps no checksum (Ceph RGW) and for every multipart object.

    .venv/bin/python -m bench.hash_cost [--mib 512] [--runs 3]

Measures, against one embedded SeaweedFS, s3gate's own `Storage.sha256` (the code completion
runs), with two references in the same run: the baseline, hashlib over the same bytes in memory
(the hashing alone), and the peer, boto3's managed download (`download_fileobj`, the SDK's
parallel ranged GETs) into a hashing sink. Prints seconds per GiB and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.devstack import embedded_s3
from app.storage import Storage

BUCKET = "s3gate-hash-bench"
KEY = "uploads/hash-bench/object"
MIB = 1024 * 1024


class _HashingSink:
    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return len(data)


def _best(runs: int, call: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hash_cost", description=__doc__)
    parser.add_argument("--mib", type=int, default=512, help="object size in MiB (default 512)")
    parser.add_argument("--runs", type=int, default=3, help="best of N (default 3)")
    args = parser.parse_args(argv)
    body = os.urandom(args.mib * MIB)
    with (
        tempfile.TemporaryDirectory(prefix="s3gate-hash-bench-") as tmp,
        embedded_s3(
            Path(tmp) / "s3", access_key="S3GATEBENCH", secret_key=secrets.token_urlsafe(24)
        ) as s3,
    ):
        client: Any = s3.client()
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=KEY, Body=body)
        storage = Storage(client, BUCKET, hash_concurrency=1)

        baseline = _best(args.runs, lambda: hashlib.sha256(body).digest())
        ours = _best(args.runs, lambda: asyncio.run(storage.sha256(KEY)))
        peer = _best(args.runs, lambda: client.download_fileobj(BUCKET, KEY, _HashingSink()))
    gib = args.mib / 1024
    print(f"object: {args.mib} MiB on SeaweedFS (loopback), best of {args.runs}")
    print(f"{'':42} {'s/GiB':>7} {'MiB/s':>7} {'vs baseline':>12} {'vs peer':>8}")
    for name, seconds in (
        ("baseline: hashlib over the bytes in memory", baseline),
        ("s3gate Storage.sha256 (completion's read)", ours),
        ("peer: boto3 download_fileobj + hashlib", peer),
    ):
        print(
            f"{name:42} {seconds / gib:7.2f} {args.mib / seconds:7.0f} "
            f"{seconds / baseline:11.1f}x {seconds / peer:7.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
