"""An environment for a child process (or a test) that the caller's own s3gate and AWS
settings cannot reach: every `S3GATE_*` and `AWS_*` variable left out, unless kept."""

from __future__ import annotations

import os
from collections.abc import Mapping

# Point botocore away from the caller's ~/.aws files and the EC2 instance metadata endpoint.
AWS_ISOLATION = {
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def is_caller_setting(name: str, keep: tuple[str, ...] = ()) -> bool:
    """Whether `name` is an S3GATE_*/AWS_* setting to leave out (one that starts with a prefix
    in `keep`, e.g. the tools' own S3GATE_TEST_, is not)."""
    return name.startswith(("S3GATE_", "AWS_")) and not (keep and name.startswith(keep))


def clean_env(
    *,
    keep: tuple[str, ...] = (),
    isolate_aws: bool = False,
    environ: Mapping[str, str] | None = None,
    **extra: str,
) -> dict[str, str]:
    """A copy of `environ` (this process's environment by default) without the S3GATE_*/AWS_*
    settings (`keep`: prefixes that stay), with AWS_ISOLATION when `isolate_aws`, plus
    `extra`."""
    source = os.environ if environ is None else environ
    env = {name: value for name, value in source.items() if not is_caller_setting(name, keep)}
    if isolate_aws:
        env.update(AWS_ISOLATION)
    env.update(extra)
    return env
