"""Serving the gateway with uvicorn, beside the gRPC server or alone.

`taskhub serve` calls `GatewayServer.start()` inside its own event loop;
`taskhub gateway` runs `serve_gateway()`. The socket is bound first, so a taken
port fails at once with an OSError; whoever started the gateway owns SIGTERM
and SIGINT and calls `stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import signal
import socket
from dataclasses import dataclass

import grpc
import uvicorn
from starlette.applications import Starlette

from taskhub import limits
from taskhub.gateway import tracing
from taskhub.gateway.app import create_app
from taskhub.gateway.events import HEARTBEAT
from taskhub.gateway.guard import listen_hosts, split_list

log = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    """uvicorn that leaves signals alone: it would take SIGTERM over and re-raise it on exit."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def split_listen(listen: str) -> tuple[str, int]:
    """`127.0.0.1:7700` or `[::1]:7700` -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, not {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass
class GatewayServer:
    """A running gateway: the uvicorn server, its task and its socket."""

    server: _Uvicorn
    task: asyncio.Task
    sock: socket.socket
    app: Starlette

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    @classmethod
    async def start(
        cls,
        grpc_target: str,
        http_listen: str,
        *,
        grace: float = 5.0,
        heartbeat: float = HEARTBEAT,
        allowed_hosts: str = "",
        allowed_origins: str = "",
        payload_limit: int = limits.DEFAULT_PAYLOAD_LIMIT,
        credentials: grpc.ChannelCredentials | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        watch_token: str | None = None,
        max_watchers_per_client: int = 500,
    ) -> GatewayServer:
        """Listens on `http_listen` (HTTPS with `tls_cert` and `tls_key`) and calls gRPC with `credentials`.

        `allowed_hosts` and `allowed_origins` are comma lists, as `--http-allowed-hosts` takes them.
        """
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        host, port = split_listen(http_listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family)
        try:
            # The port bound, for `:0` too: the Host check needs it.
            hosts = listen_hosts(host, sock.getsockname()[1]) + split_list(allowed_hosts)
            app = tracing.instrument(
                create_app(
                    grpc_target,
                    heartbeat=heartbeat,
                    allowed_hosts=hosts,
                    allowed_origins=split_list(allowed_origins),
                    payload_limit=payload_limit,
                    credentials=credentials,
                    watch_token=watch_token,
                    max_watchers_per_client=max_watchers_per_client,
                )
            )
            config = uvicorn.Config(
                app,
                lifespan="on",
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=grace,
                ssl_certfile=tls_cert,
                ssl_keyfile=tls_key,
            )
            config.load()  # here, so a bad certificate or key fails with a message
        except OSError as error:  # ssl.SSLError is one
            sock.close()
            raise OSError(f"cannot use --tls-cert {tls_cert} with --tls-key {tls_key}: {error}") from None
        server = _Uvicorn(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="taskhub-gateway")
        while not server.started:
            if task.done():  # uvicorn reports startup failures with sys.exit
                sock.close()
                with contextlib.suppress(BaseException):
                    task.result()
                raise RuntimeError("the gateway failed to start")
            await asyncio.sleep(0.01)
        return cls(server=server, task=task, sock=sock, app=app)

    async def stop(self, grace: float | None = None) -> None:
        """Stops taking connections, lets requests in flight finish (within the grace), closes the channel.

        `grace` replaces the one given at start, so a caller stopping several servers
        gives them one deadline. Event streams never finish by themselves: they end
        at once with `event: error` (`unavailable`).
        """
        if grace is not None:
            self.server.config.timeout_graceful_shutdown = grace
        self.app.state.watches.close()
        self.server.should_exit = True
        await self.task
        self.sock.close()


async def serve_gateway(
    grpc_target: str,
    http_listen: str,
    *,
    grace: float = 5.0,
    allowed_hosts: str = "",
    allowed_origins: str = "",
    payload_limit: int = limits.DEFAULT_PAYLOAD_LIMIT,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    max_watchers_per_client: int = 500,
) -> None:
    """`taskhub gateway`: runs until SIGTERM or SIGINT; gRPC over TLS with `tls_ca`, HTTPS with `tls_cert`."""
    credentials = None
    if tls_ca is not None:
        try:
            roots = pathlib.Path(tls_ca).read_bytes()
        except OSError as error:
            raise OSError(f"cannot read the TLS CA file {tls_ca}: {error.strerror or error}") from None
        credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    gateway = await GatewayServer.start(
        grpc_target,
        http_listen,
        grace=grace,
        allowed_hosts=allowed_hosts,
        allowed_origins=allowed_origins,
        payload_limit=payload_limit,
        credentials=credentials,
        tls_cert=tls_cert,
        tls_key=tls_key,
        max_watchers_per_client=max_watchers_per_client,
    )
    log.info("taskhub gateway listening on %s (port %d), calling gRPC at %s", http_listen, gateway.port, grpc_target)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("shutting down the gateway")
    await gateway.stop()
    log.info("stopped cleanly")
