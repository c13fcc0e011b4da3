"""Run a step's server in a child process, the way a learner does, for smoke tests."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from workshop.ports import free_port, wait_for_port


class ServerProcess:
    """A server command run in a step folder; its output is collected line by line."""

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
                self.process.wait(timeout=10)
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
    """`python manage.py runserver` in a step folder (Daphne's runserver from step 1 on)."""
    port = port or free_port()
    command = [
        sys.executable,
        "manage.py",
        "runserver",
        f"127.0.0.1:{port}",
        "--noreload",
    ]
    return ServerProcess(command, Path(step_dir), port, env)
