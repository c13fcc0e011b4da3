"""Run a server with one of Python's own instruments on, for the breakdowns.

python -m workshop.bench.probe memory|cpu OUTDIR MODULE [ARGS...]

Runs MODULE in this process as `python -m MODULE ARGS` would (uvicorn, the
baseline), so that nothing but the instrument differs from the measured server.
SIGUSR1 (memory): starts tracemalloc; the next writes a snapshot of what was
allocated since and is still alive to OUTDIR/snapshot.pickle. (Traced from then on
only: a whole Django process's heap, traced, would make snapshots slow to take.)
SIGUSR2 (cpu): starts sampling the stack every INTERVAL of the process's CPU time, or
as often as the kernel's clock tick allows (SIGPROF: each sample stands for the same
CPU time, and idle time is never sampled); the next stops and writes
OUTDIR/profile-<n>.json. Files appear under their final name only once complete.
"""

import collections
import json
import os
import runpy
import signal
import sys
import tracemalloc
from pathlib import Path

# Deep enough to see past asyncio and Channels' wrappers to who asked for the memory.
TRACEMALLOC_FRAMES = 12
INTERVAL = 0.001  # seconds of CPU time between two samples


def write(path: Path, save) -> None:
    partial = path.with_name(path.name + ".partial")
    save(partial)
    os.replace(partial, path)


def memory(folder: Path) -> None:
    def toggle(signum, frame):
        if not tracemalloc.is_tracing():
            tracemalloc.start(TRACEMALLOC_FRAMES)
            return
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        write(folder / "snapshot.pickle", snapshot.dump)

    signal.signal(signal.SIGUSR1, toggle)


def cpu(folder: Path) -> None:
    stacks = collections.Counter()
    running, written = False, 0

    def sample(signum, frame):
        stack = []
        while frame is not None:
            stack.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")
            frame = frame.f_back
        stacks[tuple(stack)] += 1  # innermost frame first

    def toggle(signum, frame):
        nonlocal running, written
        running = not running
        signal.setitimer(signal.ITIMER_PROF, INTERVAL if running else 0, INTERVAL)
        if running:
            stacks.clear()
            return
        written += 1
        found = [{"stack": list(s), "samples": n} for s, n in stacks.items()]
        text = json.dumps({"stacks": found})
        write(folder / f"profile-{written}.json", lambda path: path.write_text(text))

    signal.signal(signal.SIGPROF, sample)
    signal.signal(signal.SIGUSR2, toggle)


def main() -> None:
    mode, folder, module, *args = sys.argv[1:]
    {"memory": memory, "cpu": cpu}[mode](Path(folder))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
