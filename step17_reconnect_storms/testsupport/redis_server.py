"""A real redis-server for the tests, started on a free port and thrown away after.

Nothing is mocked: the Redis channel layer is tested against this server. Where
there is no redis-server, the tests that need it are skipped with a reason that
says how to get one.
"""

import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from testsupport.servers import free_port

# A skip reason starts with "needs <part>:", so that a runner can tell which part
# was missing (a CI run can turn such a skip into a failure).
HOW_TO_GET_REDIS = (
    "needs Redis: no redis-server found: install it (apt install redis-server |"
    " brew install redis) or set REDIS_URL=redis://host:port/0"
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

    def __init__(self, executable: str, port: int | None = None):
        self.executable = executable
        self.port = port or free_port()
        self.directory = tempfile.TemporaryDirectory(prefix="test-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        # The same port on every (re)start, so that clients can reconnect to it.
        # No snapshots and no append-only file: nothing outlives the tests.
        command = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.directory.name,
        ]  # fmt: skip
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

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self.directory.cleanup()


def start_redis_server() -> RedisServer:
    """A throw-away redis-server, or a skip that says how to get one.

    unittest.SkipTest, not pytest.skip: it works under pytest and under Django's
    own test runner alike.
    """
    executable = shutil.which("redis-server")
    if executable is None:
        raise unittest.SkipTest(HOW_TO_GET_REDIS)
    return RedisServer(executable).start()
