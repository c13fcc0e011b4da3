"""A real redis-server, started on a free loopback port for the tests.

Nothing is mocked: the Redis channel layer is tested against this server.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from workshop.ports import free_port
from workshop.requirements import part_missing

HOW_TO_GET_REDIS = (
    "needs Redis: redis-server not found: install it (apt install redis-server | brew install redis)"
    " or set REDIS_URL=redis://host:port/0"
)


def ping(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on 127.0.0.1, with nothing saved to disk."""

    def __init__(self, executable: str, port: int | None = None, guarded=False):
        self.executable = executable
        self.port = port or free_port()
        # Under workshop.guard: it stops when the process that started it dies.
        self.guarded = guarded and os.name == "posix"
        self.directory = tempfile.TemporaryDirectory(prefix="workshop-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        # Same port on every (re)start, so clients can reconnect to it.
        # No RDB snapshots and no append-only file: nothing outlives the tests.
        command = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.directory.name,
        ]  # fmt: skip
        if self.guarded:
            command = [sys.executable, "-m", "workshop.guard", *command]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read() if self.process.stdout else ""
                raise RuntimeError(f"redis-server exited at start:\n{output}")
            if ping(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process and self.process.stdout:
            self.process.stdout.close()
        self.process = None

    def flush_all(self) -> None:
        """Delete every key: what one benchmark run left must not weigh on the next."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            answer = sock.recv(64)
        if not answer.startswith(b"+OK"):
            raise RuntimeError(f"FLUSHALL answered {answer!r}")

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self.directory.cleanup()


def start_test_redis() -> RedisServer:
    """Start a throw-away redis-server, or skip/fail (REQUIRE_REDIS) when there is none."""
    executable = shutil.which("redis-server")
    if executable is None:
        part_missing(HOW_TO_GET_REDIS, "REQUIRE_REDIS")
    return RedisServer(executable).start()
