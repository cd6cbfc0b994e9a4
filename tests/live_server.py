"""A real server over a socket, for concurrency and fault tests (DESIGN §3: invariant 4 is
tested with parallel HTTP requests, not in-process calls).

`LiveServer` serves `services.voucher.asgi:app` in a subprocess on a free loopback port
against the test's database, so requests really race each other through the network stack,
the connection pool and the database's locks. It starts the server as production does
(services/voucher/serving.py: uvicorn, and with several workers a listening socket per worker).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from services.voucher.serving import reuse_port_balances

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> set[str] | None:
    """The inodes of the sockets listening on `port` (Linux: /proc/net/tcp and tcp6); None when
    neither table can be read (a sandbox without them): nobody can tell."""
    found: set[str] | None = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        found = found or set()
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                found.add(fields[9])
    return found


def every_worker_listens(port: int, workers: int) -> bool:
    """With several workers on Linux each listens on a socket of its own
    (services/voucher/serving.py), the last perhaps a moment after the first answers: until
    then every connection goes to the ones already listening."""
    if workers == 1 or not reuse_port_balances():
        return True
    sockets = listening(port)
    return sockets is None or len(sockets) >= workers


class LiveServer:
    def __init__(self, database_url: str, *, workers: int = 1, env: dict[str, str] | None = None,
                 app: str = "services.voucher.asgi:app") -> None:
        self.database_url = database_url
        self.workers = workers
        self.app = app
        self.port = free_port()
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        # The server's log goes to a file, never a pipe: a pipe nobody reads fills up (64 KiB)
        # and the server then blocks in its next log call, mid-request.
        self.log = tempfile.NamedTemporaryFile(prefix="voucher-live-", suffix=".log", delete=False)  # noqa: SIM115

    def log_tail(self, size: int = 4000) -> str:
        return Path(self.log.name).read_bytes()[-size:].decode(errors="replace")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> LiveServer:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "VOUCHER_ENVIRONMENT": "test",
            "VOUCHER_LOG_LEVEL": "WARNING",
            "VOUCHER_DATABASE_POOL_SIZE": "20",
            **self.env,
        }
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "services.voucher.serving", self.app, "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(self.workers), "--log-level", "warning",
             "--loop", "uvloop", "--http", "httptools"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self.log,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_tail(2000)}")
            try:
                if (httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
                        and every_worker_listens(self.port, self.workers)):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not become healthy in time: {self.log_tail(2000)}")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
