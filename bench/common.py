"""What every part of the benchmark harness shares: where things are, the names of the rows,
the plan of a run and the error that means something broke."""

from __future__ import annotations

import dataclasses
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"
BUCKET = "s3gate-bench"
OWNER = "bench-user"
FILE_SIZE = 1024  # bytes declared by POST /uploads and stored for the prepared files

BASELINE_LABEL = "GET /healthz (baseline)"
PEER_UPLOADS_LABEL = "POST /uploads (JWT + presign)"
PEER = "peer"
PEER_DIR = BENCH_DIR / "peers" / "express"
UPLOADS_LABEL = "POST /uploads"
DOWNLOADS_LABEL = "GET /downloads/{id}"
COMPLETE_LABEL = "POST /uploads/{id}/complete"


class BenchError(RuntimeError):
    """Something broke (as opposed to a slow result): the run exits 1."""


@dataclasses.dataclass
class Plan:
    duration: int
    warmup: int
    connections: int
    threads: int
    download_files: int
    complete_probe_ids: int  # prepared for a short probe run that sizes the real one (0 = none)
    complete_ids: int  # prepared without a probe (quick mode)
    signer_iterations: int


def file_bytes() -> bytes:
    """The FILE_SIZE bytes of every prepared file (text, so `complete` sniffs it as text)."""
    line = b"s3gate bench: plain text that the completion check sniffs as text\n"
    return (line * (FILE_SIZE // len(line) + 1))[:FILE_SIZE]
