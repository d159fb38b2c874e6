"""Runs uvicorn for `s3gate serve`, with a drain that loses no request a balancer has sent.

At SIGTERM a replica must stop taking connections at once (a balancer then tries the next
replica, even for a POST) and answer every request it has already been sent. uvicorn alone
resets three kinds of connection whose request a balancer has sent and may not replay:

- connections waiting in the kernel's accept queue when a worker closes the listening socket
  (its event loop had not got round to accepting them);
- with several workers, connections the kernel keeps accepting for the parent process, which
  holds the socket until every worker has drained;
- connections accepted but not read from yet, which uvicorn's shutdown takes for idle.

`DrainingServer` empties the accept queue and closes the socket in one step,
`DrainingMultiprocess` lets go of the parent's copy first (and runs DrainingServer in each
worker), and `DrainingHttpToolsProtocol` waits for a request on its way. The CI replica
scenario (deploy/ci/) checks the result under load.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import multiprocess

log = logging.getLogger("s3gate.serving")

# uvicorn's own exit status for a server that never finished starting.
STARTUP_FAILURE = 3
# How long a draining connection with nothing in progress waits for a request already on its
# way. A balancer writes its request right after connecting; this only covers a busy event loop.
REQUEST_ON_ITS_WAY_SECONDS = 1.0
# Enough for any accept queue (uvicorn's backlog is 2048); a bound, not an expected number.
MAX_QUEUED_CONNECTIONS = 4096


def take_queued_connections(listener_fd: int) -> list[socket.socket]:
    """Accept every connection the kernel has queued on a listening socket, without blocking.

    The backlog drops to zero first: from then on the kernel queues at most one more
    connection and drops other handshakes, whose clients try again a second later and, the
    socket closed by then, are refused (a balancer then tries another replica). The caller
    closes the socket right after this returns, before its event loop runs again, so that no
    connection is left in the queue to be reset.
    """
    taker = socket.socket(fileno=os.dup(listener_fd))
    taken: list[socket.socket] = []
    try:
        taker.setblocking(False)
        taker.listen(0)
        while len(taken) < MAX_QUEUED_CONNECTIONS:
            try:
                connection, _ = taker.accept()
            except (BlockingIOError, InterruptedError):
                break
            connection.setblocking(False)
            taken.append(connection)
    finally:
        taker.close()
    return taken


class DrainingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, except that a drain waits for a request on its way.

    At shutdown uvicorn closes every connection with no request in progress, including one it
    has just accepted whose request is still unread in the socket buffer: the close resets it,
    and the balancer that sent a POST there answers 502. Here such a connection gets a moment:
    a request that arrives is served with `Connection: close`; with no byte by then, it closes.
    """

    _draining = False
    _bytes_pending = False  # bytes of a request received, its response not complete yet
    _linger: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        self._bytes_pending = True
        super().data_received(data)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_response_complete(self) -> None:
        self._bytes_pending = False
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        self._draining = True
        idle = self.cycle is None or self.cycle.response_complete
        if not idle or self.transport.is_closing():
            super().shutdown()  # a request in progress: it finishes, then the connection closes
        elif not self._bytes_pending:
            self._linger = self.loop.call_later(REQUEST_ON_ITS_WAY_SECONDS, self._close_if_idle)
        # else part of a request is in: it completes (Connection: close) within the grace period

    def _close_if_idle(self) -> None:
        if not self._bytes_pending and not self.transport.is_closing():
            self.transport.close()


class DrainingServer(uvicorn.Server):
    """uvicorn's server, except that closing the listening sockets resets no connection, and
    that `on_started` runs once the sockets listen (never when startup fails)."""

    def __init__(
        self, config: uvicorn.Config, on_started: Callable[[], None] | None = None
    ) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn sets `started` after its listeners are bound and listening, and exits
        # before that when the lifespan or the bind fails.
        await super().startup(sockets)
        if self.started and self._on_started is not None:
            self._on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Empty each accept queue and close each listener in one go, without letting the event
        # loop run in between: the kernel has microseconds, not a loop iteration, to queue a
        # connection that nobody takes (and the backlog of zero admits at most one).
        taken: list[socket.socket] = []
        for server in self.servers:
            for listener in server.sockets or ():
                taken += take_queued_connections(listener.fileno())
            server.close()
        for sock in sockets or ():
            sock.close()
        if taken:
            log.info("drain: took %d connection(s) from the accept queue", len(taken))
        loop = asyncio.get_running_loop()
        for connection in taken:
            # Served like any other connection: uvicorn's shutdown below lets it finish.
            await loop.connect_accepted_socket(self._new_protocol, connection, ssl=self.config.ssl)
        await super().shutdown(sockets)

    def _new_protocol(self) -> asyncio.Protocol:
        # What uvicorn's startup builds for each connection it accepts.
        protocol: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )
        return protocol


class DrainingProcess(multiprocess.Process):
    """One of uvicorn's worker processes, running DrainingServer."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server


class DrainingMultiprocess(multiprocess.Multiprocess):
    """uvicorn's worker supervisor, except that the parent lets go of the listening socket first.

    At SIGTERM each worker closes its copy of the socket and finishes its requests, but
    uvicorn's parent keeps its own copy until every worker has exited. Meanwhile the kernel
    still completes handshakes that no worker will ever accept: those connections wait out the
    drain and are then reset. With the parent's copy closed first, the socket goes away with
    the last worker's, and a new connection is refused at once.
    """

    def run(self) -> None:
        # uvicorn's supervisor builds every worker (at start, on restart, on SIGTTIN) from its
        # module's `Process`; while this supervisor runs, that is DrainingProcess.
        original = multiprocess.Process
        multiprocess.Process = DrainingProcess  # type: ignore[misc]
        try:
            super().run()
        finally:
            multiprocess.Process = original  # type: ignore[misc]

    def _stop_listening(self) -> None:
        for sock in self.sockets:
            sock.close()

    def handle_term(self) -> None:
        self._stop_listening()
        super().handle_term()

    def handle_int(self) -> None:
        self._stop_listening()
        super().handle_int()


def run_server(
    app: str | Callable[..., Any], *, on_started: Callable[[], None] | None = None, **options: Any
) -> int:
    """What `uvicorn.run(app, **options)` does, with the draining protocol, server and
    supervisor. `on_started` runs once the port takes connections (one worker only)."""
    options.setdefault("http", f"{__name__}:{DrainingHttpToolsProtocol.__name__}")
    config = uvicorn.Config(app, **options)
    if on_started is not None and config.workers > 1:
        raise ValueError("on_started needs a single worker: each worker starts on its own")
    server = DrainingServer(config=config, on_started=on_started)
    try:
        if config.workers > 1:
            DrainingMultiprocess(config, sockets=[config.bind_socket()]).run()
            return 0
        server.run()
    except KeyboardInterrupt:
        return 0
    return 0 if server.started else STARTUP_FAILURE
