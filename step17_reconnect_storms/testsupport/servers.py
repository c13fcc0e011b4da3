"""Run this step's server in a child process, the way you do, for the tests that need
a real server: the runserver banner, a real HTTP request, a real WebSocket."""

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the operating system picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> bool:
    """Wait until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class ServerProcess:
    """A server command run in the step folder; its output is collected line by line.

    Use it as a context manager, so that the server stops however the test ends.
    """

    def __init__(
        self, command: list[str], cwd: Path, port: int, env: dict | None = None
    ):
        self.command = command
        self.cwd = cwd
        self.port = port
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def start(self) -> "ServerProcess":
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        threading.Thread(target=self._collect_output, daemon=True).start()
        return self

    def _collect_output(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for_output(self, text: str, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return True
            if self.process.poll() is not None:
                time.sleep(0.2)  # let the reader thread catch the last lines
                return text in self.output
            time.sleep(0.05)
        return False

    def wait_until_listening(self, timeout: float = 30.0) -> bool:
        return wait_for_port(self.port, timeout=timeout)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                # Usually well under a second. Daphne can hang on exit when a
                # synchronous consumer was still leaving its group: then kill it.
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def runserver(
    step_dir: Path, port: int | None = None, env: dict | None = None
) -> ServerProcess:
    """`python manage.py runserver` in the step folder (Daphne's runserver)."""
    port = port or free_port()
    command = [
        sys.executable,
        "manage.py",
        "runserver",
        f"127.0.0.1:{port}",
        "--noreload",
    ]
    return ServerProcess(command, Path(step_dir), port, env)
