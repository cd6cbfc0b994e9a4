"""services/voucher/serving.py through real sockets and processes: with several workers each
listens on a socket of its own (SO_REUSEPORT), so a burst of connections reaches every worker;
the parent's SIGTERM or SIGINT stops them all; one worker is plain uvicorn in one process."""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.voucher import serving
from tests.live_server import ROOT, LiveServer, listening

pytestmark = pytest.mark.timeout(60)

#: Answers every request with the id of the process that served it.
PID_APP = "tests.pid_app:app"
needs_reuse_port = pytest.mark.skipif(not serving.reuse_port_balances(), reason="SO_REUSEPORT balances on Linux only")


def pid_server(workers: int) -> LiveServer:
    return LiveServer("", workers=workers, app=PID_APP)  # the app opens no database


def burst(port: int, connections: int = 32) -> list[int]:
    """Open `connections` keep-alive connections at once (as a client's pool does), then send one
    request on each: the pid that answered on each connection. With 32 connections spread over
    2 sockets, all land on one with probability 2 / 2**32."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(connections)]
    try:
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        return [int(_body(sock)) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _body(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(4096)
    return body


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.add(int(entry.name))
            except (OSError, IndexError):
                pass
    return found


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def sockets_of(pid: int) -> set[str]:
    """The inodes of the sockets process `pid` holds open."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                found.add(target[len("socket:["):-1])
    return found


def alive(pid: int) -> bool:
    """Running: not gone, and not a zombie (exited, waiting for whoever adopted it to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@needs_reuse_port
def test_a_burst_of_connections_reaches_both_workers() -> None:
    with pid_server(workers=2) as server:
        assert server.process is not None
        answered = set(burst(server.port))
        assert len(answered) == 2, answered
        assert answered <= children(server.process.pid)  # workers, not the parent


@needs_reuse_port
def test_a_worker_replacing_a_dead_one_listens_on_a_socket_of_its_own() -> None:
    with pid_server(workers=2) as server:
        assert server.process is not None
        first = set(burst(server.port))
        assert len(first) == 2, first
        dead = first.pop()
        its_socket = (listening(server.port) or set()) & sockets_of(dead)
        assert len(its_socket) == 1, its_socket
        os.kill(dead, signal.SIGKILL)
        # A connection queued on the dead worker's socket when it died is reset with it; once the
        # socket is closed the kernel sends every connection to the sockets still listening. The
        # kernel may close a killed process's files a moment after it has become a zombie.
        wait_for(lambda: not alive(dead) and not (listening(server.port) or set()) & its_socket)
        assert dead not in set(burst(server.port))
        wait_for(lambda: len(listening(server.port) or ()) == 2, 30)  # uvicorn's supervisor has replaced it
        answered = set(burst(server.port))
        assert len(answered) == 2 and dead not in answered and first < answered, (dead, answered)


@needs_reuse_port
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_parents_signal_stops_every_worker(signum: int) -> None:
    with pid_server(workers=2) as server:
        assert server.process is not None
        workers = set(burst(server.port))
        assert len(workers) == 2, workers
        spawned = children(server.process.pid)  # the workers and multiprocessing's resource tracker
        server.process.send_signal(signum)
        assert server.process.wait(10) == 0
        # The parent joins its workers before it exits: none is left, not even for a moment.
        assert [pid for pid in workers if alive(pid)] == []
        wait_for(lambda: not any(alive(pid) for pid in spawned), 5)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def test_one_worker_is_one_plain_uvicorn_process() -> None:
    with pid_server(workers=1) as server:
        assert server.process is not None
        assert set(burst(server.port, 4)) == {server.process.pid}
        assert children(server.process.pid) == set()


@needs_reuse_port
def test_a_port_already_served_is_refused_not_shared() -> None:
    """SO_REUSEPORT would let a second server on the same port take half the connections; the
    launcher refuses the port as uvicorn does (exit 3) instead."""
    with pid_server(workers=2) as first:
        assert first.process is not None
        second = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "services.voucher.serving", PID_APP, "--host", "127.0.0.1",
             "--port", str(first.port), "--workers", "2"],
            cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert second.returncode == 3, second.stderr
        assert "in use" in second.stderr, second.stderr
        assert set(burst(first.port)) <= children(first.process.pid)


@needs_reuse_port
def test_workers_that_cannot_start_stop_the_launcher_with_exit_3() -> None:
    """uvicorn's supervisor stops when a worker fails to start, but exits 0; the launcher says so."""
    failed = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "services.voucher.serving", "tests.no_such_module:app", "--host", "127.0.0.1",
         "--port", "0", "--workers", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert failed.returncode == 3, failed.stderr
    assert "failed to start" in failed.stderr, failed.stderr


def test_one_worker_or_no_balancing_reuse_port_is_plain_uvicorn_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(serving.uvicorn, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    serving.run(PID_APP, host="0.0.0.0", port=8123, workers=1, loop="uvloop", backlog=100)
    monkeypatch.setattr(serving, "reuse_port_balances", lambda: False)
    serving.run(PID_APP, port=8124, workers=3, http="httptools")
    assert calls == [
        ((PID_APP,), {"host": "0.0.0.0", "port": 8123, "workers": 1, "loop": "uvloop", "backlog": 100}),
        ((PID_APP,), {"host": "127.0.0.1", "port": 8124, "workers": 3, "http": "httptools"}),
    ]


@needs_reuse_port
def test_a_port_reserved_by_a_launcher_still_starting_is_refused_to_a_second() -> None:
    """Between the parent's reservation and its first worker's listen (spawning, importing the
    app, its start-up) nothing listens on the port: a second launcher must still be refused,
    not join the first's SO_REUSEPORT group."""
    import uvicorn

    first = serving._reserve(uvicorn.Config(PID_APP, host="127.0.0.1", port=0))  # noqa: SLF001
    try:
        port = first.getsockname()[1]
        with pytest.raises(SystemExit) as refused:
            serving._reserve(uvicorn.Config(PID_APP, host="127.0.0.1", port=port))  # noqa: SLF001
        assert refused.value.code == 3
        worker = pickle.loads(pickle.dumps(first))  # what a worker unpickles: a socket of its own
        try:
            assert worker.fileno() != first.fileno() and worker.getsockname() == first.getsockname()
        finally:
            worker.close()
    finally:
        first.close()


def test_served_app_freezes_what_its_import_built(tmp_path: Path) -> None:
    """The module uvicorn imports leaves the import's objects out of the cyclic collector and
    a young generation larger than Python's default (importing it here would freeze this test
    process too: it runs in a child)."""
    probe = ("import gc; default = gc.get_threshold(); from services.voucher.asgi import app; "
             "print(any(o is app for o in gc.get_objects()), gc.get_freeze_count(), *default, *gc.get_threshold())")
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    app_collectable, frozen = out[0] == "True", int(out[1])
    default, threshold = [int(n) for n in out[2:5]], [int(n) for n in out[5:]]
    assert not app_collectable  # frozen after the app was built: the collector no longer walks it
    assert frozen > 10_000  # the app, its routes and schemas, SQLAlchemy's and pydantic's own
    assert threshold[0] > default[0]


async def test_an_app_that_served_every_kind_of_page_is_freed_once_dropped(tmp_path) -> None:
    """Nothing process-wide keeps an app alive once it is dropped: FastAPI's callable caches
    (4,096 entries for the process) had kept every app whose docs pages or console pages were
    closures over it, with its engine and everything it built (the suite builds an app per
    test). The docs handlers read the app from the request; the console is built at its first
    page and its closures go with the app."""
    import gc
    import weakref

    from services.voucher.main import create_app
    from services.voucher.settings import Settings

    async def served() -> weakref.ref[Any]:
        app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/freed.db", environment="test",
                                  log_level="WARNING"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for path in ("/docs", "/redoc", "/console/sign-in", "/openapi.json", "/healthz", "/v1/programmes?x=1"):
                assert (await client.get(path)).status_code < 500, path
        await app.state.database.dispose()
        return weakref.ref(app)

    gone = [await served() for _ in range(3)]
    gc.collect()
    assert [ref() for ref in gone] == [None, None, None]
