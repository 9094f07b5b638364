"""The gunicorn worker class of the service (``--worker-class screenaware.worker.Worker``)."""

from __future__ import annotations

import asyncio
import functools
import gc
import signal
import socket
import sys
from typing import Any, ClassVar

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from screenaware.acceptgate import AcceptGate, ConnectionBoard
from screenaware.config import Config


class BalancedServer(Server):
    """uvicorn's server, accepting through an :class:`AcceptGate` rather than
    ``loop.create_server`` (which takes every waiting connection at once)."""

    def __init__(self, config: Any, gate: AcceptGate) -> None:
        super().__init__(config=config)
        self.gate = gate
        # uvicorn's protocols add and discard themselves here: the gate counts them.
        self.server_state.connections = self.gate.connections

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start the app as uvicorn does (given no sockets), then the gate."""
        await super().startup(sockets=[])
        if self.should_exit:
            return
        protocol = functools.partial(
            self.config.http_protocol_class,  # type: ignore[call-arg]
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        self.gate.start(protocol, tls=self.config.ssl)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting (closing the listening sockets), then shut down as uvicorn does."""
        await self.gate.close()
        await super().shutdown(sockets=sockets)


class Worker(UvicornWorker):
    """uvicorn's gunicorn worker, with connections spread evenly over the workers
    (:class:`BalancedServer`, ``SCREENAWARE_BALANCE_CONNECTIONS``) and uvicorn's own
    access log off.

    The service writes its own access lines (JSON, buffered; ``SCREENAWARE_ACCESS_LOG``).
    uvicorn's would otherwise build a log record per request for a logger that
    gunicorn leaves without a handler unless ``--access-logfile`` is given: about
    5 µs of CPU per request (a trivial responder costs about 40 µs), for nothing.
    """

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {**UvicornWorker.CONFIG_KWARGS, "access_log": False}
    # Mapped by the master as it creates its first worker, inherited by every fork.
    board: ClassVar[ConnectionBoard | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if Worker.board is None and self.cfg.workers > 1:
            # Room for a rolling restart's old and new workers, and some TTIN.
            Worker.board = ConnectionBoard(slots=max(16, 4 * self.cfg.workers))

    def load_wsgi(self) -> None:
        """Load the app, then move every object alive now out of the cyclic GC's
        sight: the app lives as long as the worker, and without this every full
        collection walks all of it again. A cold month of ``/streams`` parses ~90k
        rows of InfluxDB answers, which trigger several full collections: with the
        app frozen they cost half the worker's CPU less (300 -> 160 ms)."""
        super().load_wsgi()
        gc.freeze()

    async def _serve(self) -> None:
        """Serve as uvicorn's worker does, but let SIGQUIT stop the server.

        gunicorn's master sends SIGQUIT to its workers when it gets SIGINT or SIGQUIT
        itself (a "quick shutdown": ``kill -INT`` on the master alone, not Ctrl-C on
        the whole group). uvicorn's worker hands SIGQUIT to gunicorn's handler, which
        only marks the worker as dead for a loop uvicorn does not run, so the workers
        served on until the master SIGKILLed them after ``--graceful-timeout``, their
        lifespan shutdown (the write queues' last flush) never run. Here SIGQUIT asks
        the server to stop, as SIGTERM does: in-flight requests finish, queued writes
        are flushed, then the worker exits.
        """
        self.config.app = self.wsgi
        server: Server
        # With --reuse-port each worker listens on sockets of its own: a sibling
        # could never take a connection this one leaves to it.
        settings = Config.load()
        if Worker.board is not None and settings.balance_connections and not self.cfg.reuse_port:
            gate = AcceptGate(self.sockets, Worker.board, defer_s=settings.balance_wait_ms / 1000)
            server = BalancedServer(self.config, gate)
            sockets = []  # the gate listens on them
        else:
            server, sockets = Server(config=self.config), self.sockets

        def stop() -> None:
            server.should_exit = True

        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, stop)
        await server.serve(sockets=sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
