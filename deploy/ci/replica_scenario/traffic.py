"""The run's timeline: users through nginx, SIGKILL and restart of replica B, then the drain of
replica A, then a few more seconds of traffic."""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass, field

import httpx

from app.auth import mint_token
from replica_scenario.clients import Client, Tally, expect, user_loop
from replica_scenario.common import FAIL_TIMEOUT_SECONDS, ScenarioError, log
from replica_scenario.drain import DrainReport, drain
from replica_scenario.stack import Stack


@dataclass
class Timeline:
    traffic_started: float = 0.0
    kill_started: float = 0.0
    kill_done: float = 0.0
    restarted_ready: float = 0.0
    drain: DrainReport = field(default_factory=DrainReport)


async def rejoin(stack: Stack, since: float) -> float:
    """Seconds until nginx's log shows the restarted replica B answering a request."""
    deadline = since + 2 * FAIL_TIMEOUT_SECONDS + 5
    while not await asyncio.to_thread(stack.served_by, stack.b, since):
        if time.time() > deadline:
            logs = stack.logs(stack.b)
            raise ScenarioError(f"nginx sent no request to the restarted replica B:\n{logs}")
        await asyncio.sleep(0.25)
    return time.time() - since


async def traffic(stack: Stack, args: argparse.Namespace) -> tuple[Tally, Timeline]:
    tally, timeline = Tally(), Timeline()
    rng = random.Random(args.seed)
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=args.users * 2, max_keepalive_connections=args.users)
    async with (
        httpx.AsyncClient(base_url=stack.nginx_url, timeout=60, limits=limits) as api,
        httpx.AsyncClient(timeout=60, limits=limits) as s3,
    ):
        client = Client(api, s3, tally)
        users = [
            asyncio.create_task(
                user_loop(
                    client,
                    f"user{n:02d}",
                    mint_token(stack.jwt_secret, f"user{n:02d}", ttl_seconds=3600),
                    stop,
                    random.Random(rng.random()),
                )
            )
            for n in range(args.users)
        ]
        timeline.traffic_started = time.time()
        try:
            await asyncio.sleep(args.steady_seconds)
            log(f"SIGKILL replica B ({stack.b.container})")
            timeline.kill_started = time.time()
            await stack.docker_async("kill", "--signal", "KILL", stack.b.container)
            timeline.kill_done = time.time()
            await asyncio.sleep(3)
            await stack.docker_async("start", stack.b.container)
            ready = await asyncio.to_thread(stack.wait_ready, stack.b)
            timeline.restarted_ready = time.time()
            log(f"replica B started again, ready after {ready:.1f} s")
            # nginx tries B again once fail_timeout has passed since B's last failure, and a try
            # that came before B was ready counts as a new failure: wait until nginx's log shows
            # B answering, then let it serve a few seconds before the drain
            rejoined = await rejoin(stack, timeline.restarted_ready)
            log(f"nginx passes requests to B again, {rejoined:.1f} s after it was ready")
            await asyncio.sleep(3)
            log(f"SIGTERM replica A ({stack.a.container}) with requests in flight on it")
            drain_token = mint_token(stack.jwt_secret, "drain", ttl_seconds=3600)
            timeline.drain = await drain(stack, tally, drain_token, s3)
            log(
                f"replica A exited {timeline.drain.exit_code} after "
                f"{timeline.drain.exit_seconds:.1f} s"
            )
            await asyncio.sleep(args.after_drain_seconds)
        finally:
            stop.set()
            await asyncio.gather(*users, return_exceptions=True)
        for user in users:
            if user.exception() is not None:
                tally.problems.append(f"a user loop crashed: {user.exception()!r}")
        # The creates that straddled the drain were never uploaded: abandon them.
        drain_token = mint_token(stack.jwt_secret, "drain", ttl_seconds=3600)
        for file_id in timeline.drain.pending:
            response = await api.delete(
                f"/uploads/{file_id}", headers={"Authorization": f"Bearer {drain_token}"}
            )
            if expect(tally, response, "DELETE /uploads/{id}", 204):
                tally.abandoned.add(file_id)
    return tally, timeline
