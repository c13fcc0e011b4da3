"""Run a server so that nothing of it outlives the command that started it.

    python -m workshop.guard COMMAND ...

The server runs in a process group of its own, with whatever processes it starts
(runserver's autoreloader starts the real server as a child; uvicorn, its workers;
the stack, nginx and PostgreSQL). Ctrl+C, SIGTERM or SIGHUP to this process, or the
death of the process that started it (even by SIGKILL), ends the whole group: Ctrl+C
to the group first, as a terminal would send it, then SIGTERM, then SIGKILL. When the
server ends by itself, what it left in its group ends too. The exit status is the
server's (128 + N when signal N ended it). POSIX only: on Windows a console's Ctrl+C
reaches every process anyway.
"""

import os
import signal
import subprocess
import sys
import time

# Each signal sent to the server's group in turn, and how long it has to stop then.
ESCALATION = ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0))
POLL = 0.25  # seconds between looks at the server and at the parent


def under_guard(command: list[str]) -> list[str]:
    """The command to run COMMAND under this module. By the file's path, not with
    -m: in the repository's top folder, "workshop" is workshop.py, not this package."""
    return [sys.executable, os.path.abspath(__file__), *command]


def die_with_parent() -> None:
    """Linux: be sent SIGTERM the moment the parent dies (elsewhere the parent is
    watched in the main loop)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass


def end_leftovers(group: int) -> None:
    """What the server left running in its group (a reloader's child whose parent
    was killed), told to stop, then killed."""
    for signum, wait in ESCALATION[1:]:
        if not group_alive(group):
            return
        signal_group(group, signum)
        deadline = time.monotonic() + wait
        while group_alive(group) and time.monotonic() < deadline:
            time.sleep(POLL)


def main(command: list[str]) -> int:
    if not command:
        sys.stderr.write("usage: python -m workshop.guard COMMAND ...\n")
        return 2
    parent = os.getppid()
    die_with_parent()
    asked_to_stop = []

    def stop(signum, frame):
        asked_to_stop.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    server = subprocess.Popen(command, start_new_session=True)
    group = server.pid
    escalation = list(ESCALATION)
    deadline = None
    while True:
        try:
            code = server.wait(timeout=POLL)
            break
        except subprocess.TimeoutExpired:
            pass
        if os.getppid() != parent:
            asked_to_stop.append("the parent died")
        now = time.monotonic()
        if asked_to_stop and escalation and (deadline is None or now > deadline):
            signum, grace = escalation.pop(0)
            signal_group(group, signum)
            deadline = now + grace
    end_leftovers(group)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
