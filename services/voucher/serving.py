"""Serve an ASGI app with N worker processes, each listening on a socket of its own.

`uvicorn --workers N` binds one listening socket in the parent and every worker accepts on it.
asyncio and uvloop accept every pending connection in one wake-up, so when a client opens its
keep-alive connections in a burst (a billing system's connection pool, the bench's clients) one
worker often takes them all and the others idle. Here, on Linux, each worker listens on a socket
of its own bound with SO_REUSEPORT to the same address, and the kernel spreads new connections
over the workers (what nginx's `reuseport` does). Elsewhere — SO_REUSEPORT missing, or not
balancing connections as on BSD and macOS — it is uvicorn's shared socket, as before.

    python -m services.voucher.serving services.voucher.asgi:app --host 127.0.0.1 --port 8000 --workers 2

With one worker it is plain `uvicorn.run`. With more, uvicorn's own supervisor runs the workers
(`uvicorn.supervisors.Multiprocess`: health checks, a dead worker replaced, SIGTERM and SIGINT
stop every worker, SIGHUP, SIGTTIN and SIGTTOU); only the socket it hands each worker differs,
see `_ReservedPort`.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import Any, SupportsIndex, TypeVar

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

logger = logging.getLogger("uvicorn.error")
S = TypeVar("S", bound=socket.socket)


def reuse_port_balances() -> bool:
    """Whether sockets bound with SO_REUSEPORT share the incoming connections between them:
    Linux (3.9 and later). BSD and macOS have the option but do not balance with it."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def run(app: str, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, **options: Any) -> None:
    """Serve the ASGI app `app` ("module:attribute") on `host`:`port` with `workers` processes.

    `options` are uvicorn's (`loop`, `http`, `log_level`, `proxy_headers`,
    `forwarded_allow_ips`, `backlog`, ...). One worker, a Unix socket, a file descriptor,
    reload, or no SO_REUSEPORT that balances: exactly `uvicorn.run`.
    """
    elsewhere = options.get("uds") or options.get("fd") is not None or options.get("reload")
    if workers <= 1 or not reuse_port_balances() or elsewhere:
        uvicorn.run(app, host=host, port=port, workers=workers, **options)
        return
    config = uvicorn.Config(app, host=host, port=port, workers=workers, **options)
    reserved = _reserve(config)
    supervisor = Multiprocess(config, sockets=[reserved])
    try:
        supervisor.run()
    except KeyboardInterrupt:  # as uvicorn.run
        pass
    finally:
        reserved.close()
    # uvicorn's supervisor stops every worker when one fails to start (the app, its lifespan or
    # the socket is broken) and returns, and `uvicorn.run` then exits 0; say so in the exit
    # status, as one worker would (it keeps the failed worker in `processes`, its exit code 3).
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        sys.exit(STARTUP_FAILURE)


class _ReservedPort(socket.socket):
    """The parent's socket: bound with SO_REUSEPORT, so it holds the port (and tells the real
    one when asked for port 0), and never listening, so the kernel gives it no connection.

    uvicorn starts each worker with the multiprocessing "spawn" method, handing it the sockets
    given to `Multiprocess` as a pickled argument (`uvicorn._subprocess.get_subprocess`), and the
    worker's server listens on what it receives (`Server.startup`: `loop.create_server(sock=...,
    backlog=config.backlog)`); the parent only passes the sockets on. So this socket pickles not
    as itself, like a plain socket (multiprocessing duplicates its descriptor), but as "bind a
    new SO_REUSEPORT socket to my address": every worker — the first ones, one replacing a dead
    worker, SIGHUP's and SIGTTIN's — unpickles a listening socket of its own.
    """

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        return _bind_reuse_port, (self.family, self.getsockname(), socket.socket, True)


def _bind_reuse_port(family: int, address: Any, cls: type[S], reuse_addr: bool) -> S:
    """A TCP socket bound with SO_REUSEPORT to `address`, and with SO_REUSEADDR (as uvicorn's)
    if `reuse_addr`. Failing, it logs why and exits as uvicorn does when it cannot bind
    (STARTUP_FAILURE)."""
    sock = cls(family, socket.SOCK_STREAM)
    try:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        logger.error(exc)
        sys.exit(STARTUP_FAILURE)
    return sock


def _reserve(config: uvicorn.Config) -> _ReservedPort:
    """Reserve the port for the workers. First as uvicorn binds (SO_REUSEADDR only), which fails
    while anything listens there — another server, or this one started twice — instead of
    joining its SO_REUSEPORT group and sharing the connections with it."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((config.host, config.port))
        except OSError as exc:
            logger.error(exc)
            sys.exit(STARTUP_FAILURE)
        address = probe.getsockname()  # the real port when asked for port 0
    # Without SO_REUSEADDR: a socket bound with it and not listening would not stop a second
    # launcher's probe (above), which would then join this group before our workers listen.
    # (The TIME_WAIT connections a previous run left on the port do not stop this bind: they
    # came from SO_REUSEPORT listeners of the same user.)
    reserved = _bind_reuse_port(family, address, _ReservedPort, False)
    where = f"[{config.host}]" if family == socket.AF_INET6 else config.host
    logger.info("Uvicorn running on %s://%s:%d with SO_REUSEPORT, a socket per worker (Press CTRL+C to quit)",
                "https" if config.is_ssl else "http", where, address[1])
    return reserved


def main(argv: list[str] | None = None) -> None:
    """`python -m services.voucher.serving APP [options]`: uvicorn's command line, the options
    the service, its tests and the bench use, with uvicorn's defaults."""
    parser = argparse.ArgumentParser(prog="python -m services.voucher.serving", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app", help="The ASGI app, module:attribute.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--loop", default="auto")
    parser.add_argument("--http", default="auto")
    parser.add_argument("--log-level", default=None)
    parser.add_argument("--backlog", type=int, default=2048)
    # X-Forwarded-For is believed only from the proxies named, as `voucher serve` does: uvicorn's
    # own default believes it from 127.0.0.1, so a client on the same host (or behind a local
    # proxy that passes the header through) chose the address the failed-login throttle counts
    # (an independent review, December 2026).
    parser.add_argument("--forwarded-allow-ips", default=os.environ.get("FORWARDED_ALLOW_IPS"))
    parser.add_argument("--proxy-headers", action=argparse.BooleanOptionalAction, default=None,
                        help="Kept for scripts that pass it; the header is believed exactly when "
                             "--forwarded-allow-ips (or FORWARDED_ALLOW_IPS) names the proxies.")
    args = parser.parse_args(argv)
    run(args.app, host=args.host, port=args.port, workers=args.workers, loop=args.loop, http=args.http,
        log_level=args.log_level, backlog=args.backlog, proxy_headers=args.forwarded_allow_ips is not None,
        forwarded_allow_ips=args.forwarded_allow_ips or "")


if __name__ == "__main__":
    main()
