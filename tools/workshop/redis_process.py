"""The redis-server a workshop command starts for the servers it runs: `make stepN`
for a step that wants Redis, `make check` on the tutorial's settings, the benchmark,
the workers demo, and the tooling's own tests.

A step's tests start theirs with the step's own testsupport/redis_server.py. This
one is the workshop's and holds only what its commands need: start, empty, close.
"""

import os
import socket
import subprocess
import tempfile
import time

from workshop.guard import under_guard
from workshop.ports import free_port


def ask(port: int, request: bytes, host: str = "127.0.0.1", timeout=0.5) -> bytes:
    """Redis' first answer to one inline command, such as b"PING"."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request + b"\r\n")
        return sock.recv(64)


def ping(port: int, host: str = "127.0.0.1") -> bool:
    try:
        return ask(port, b"PING", host).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """redis-server on 127.0.0.1 that saves nothing to disk: on `port`, or on a free
    one. close() stops it and removes its working folder."""

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
        command = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.directory.name,
        ]  # fmt: skip
        if self.guarded:
            command = under_guard(command)
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited at start:\n{self.process.stdout.read()}"
                )
            if ping(self.port):
                return self
            time.sleep(0.05)
        self.close()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port}")

    def flush_all(self) -> None:
        """Delete every key: what one benchmark run left must not weigh on the next."""
        answer = ask(self.port, b"FLUSHALL", timeout=5)
        if not answer.startswith(b"+OK"):
            raise RuntimeError(f"FLUSHALL answered {answer!r}")

    def close(self) -> None:
        if self.process:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process.stdout.close()
            self.process = None
        self.directory.cleanup()
