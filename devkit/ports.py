"""Ports free on 127.0.0.1.

The one implementation is `app.devstack.free_ports`, which `s3gate dev` ships with (the app
cannot import this kit); the kit names it for the tools and adds the single-port form.
"""

from __future__ import annotations

from app.devstack import free_ports

__all__ = ["free_port", "free_ports"]


def free_port() -> int:
    """One port free on 127.0.0.1 right now."""
    return free_ports(1)[0]
