"""Run a server with one of Python's own instruments on, for the breakdowns.

python -m workshop.bench.probe memory|cpu|floor|floor+cpu OUTDIR MODULE [ARGS...]

Runs MODULE in this process as `python -m MODULE ARGS` would (uvicorn, the
baseline), so that nothing but the instrument differs from the measured server.
SIGUSR1 (memory): starts tracemalloc; the next writes a snapshot of what was
allocated since and is still alive to OUTDIR/snapshot.pickle. (Traced from then on
only: a whole Django process's heap, traced, would make snapshots slow to take.)
floor: the server with the last step's own calls of a join and of a message replaced
by ones that return at once (FLOOR).
SIGUSR2 (cpu): starts sampling every INTERVAL of the process's CPU time, or as often
as the kernel's clock tick allows (SIGPROF: idle time is never sampled); each sample
gives every thread's CPU time since the last one to the stack that thread is in. The
next SIGUSR2 stops and writes OUTDIR/profile-<n>.json. Files appear under their final
name only once complete.
"""

import collections
import json
import os
import runpy
import signal
import sys
import threading
import time
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


def stack_of(frame) -> tuple[str, ...]:
    """file:function of each frame, innermost first."""
    stack = []
    while frame is not None:
        stack.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")
        frame = frame.f_back
    return tuple(stack)


def cpu(folder: Path) -> None:
    stacks = collections.Counter()  # stack -> CPU seconds
    clocks: dict[
        int, list
    ] = {}  # thread -> [its CPU clock, its CPU time at the last sample]
    running, written = False, 0

    def sample(signum, frame):
        # Each thread's CPU time since the last sample goes to the stack it is in
        # now: the database thread's work is not the event loop's.
        main = threading.main_thread().ident
        for ident, top in sys._current_frames().items():
            if ident not in clocks:
                try:
                    clock = time.pthread_getcpuclockid(ident)
                except OSError:
                    continue
                clocks[ident] = [clock, time.clock_gettime(clock)]
                continue
            try:
                now = time.clock_gettime(clocks[ident][0])
            except OSError:  # the thread has ended
                del clocks[ident]
                continue
            if now > clocks[ident][1]:
                stacks[stack_of(frame if ident == main else top)] += (
                    now - clocks[ident][1]
                )
                clocks[ident][1] = now

    def toggle(signum, frame):
        nonlocal running, written
        running = not running
        signal.setitimer(signal.ITIMER_PROF, INTERVAL if running else 0, INTERVAL)
        if running:
            stacks.clear()
            clocks.clear()
            return
        written += 1
        found = [{"stack": list(s), "seconds": t} for s, t in stacks.items()]
        text = json.dumps({"stacks": found})
        write(folder / f"profile-{written}.json", lambda path: path.write_text(text))

    signal.signal(signal.SIGPROF, sample)
    signal.signal(signal.SIGUSR2, toggle)


# floor: the last step's own calls of a join and of a message, each replaced by one
# that returns at once: for a join, what an empty room gives (nobody's sockets, no
# history, nobody online); for a message, allowed, and numbered as storing it would,
# but not stored. What a join or a message then costs is what Channels, the server
# and the session cost: what no change to the step's own calls could take away.
NUMBERS = collections.Counter()  # the floor's messages, numbered per room


def stored(room_name, messages):
    """store.save_messages without the database. Called by the room's writer, in the
    one database thread, as the real one is: numbers follow each other per room."""
    frames = []
    for user, text, _ in messages:
        NUMBERS[room_name] += 1
        frame = {"type": "message", "room": room_name, "id": NUMBERS[room_name]}
        frame.update(
            author=user.get_username(), text=text, created="2026-01-01T00:00:00Z"
        )
        frames.append((frame, True))
    return frames


async def allowed(users):
    return [True] * len(users)


class Nobody:
    """Presence (chat/online.py) as an empty room has it: every socket let in, nobody
    online, nothing ever changes."""

    async def enter(self, room_name, user, channel_name):
        return True

    async def told(self, room_name):
        return 0, []

    async def leave(self, room_name, user, channel_name):
        pass

    async def refresh(self, sockets):
        pass

    async def versions(self, room_names):
        return {}

    async def changes(self, room_names):
        return []


FLOOR = {
    "chat.store": {
        "history": lambda room_name, after, count: (0, []),
        "save_messages": stored,
    },
    "chat.online": {"backend": Nobody},
    "chat.limits": {"allow_messages": allowed},
}


def floor(folder: Path) -> None:
    import importlib.abc
    import importlib.util

    class Patcher(importlib.abc.MetaPathFinder):
        """Replaces FLOOR's functions in each of its modules once it is imported."""

        def find_spec(self, name, path, target=None):
            if name not in FLOOR:
                return None
            sys.meta_path.remove(self)  # find the module itself, without this finder
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                for function, stub in FLOOR[name].items():
                    if not hasattr(module, function):  # renamed by the step
                        raise AttributeError(f"{name} has no {function}() to stub")
                    setattr(module, function, stub)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Patcher())


def main() -> None:
    modes, folder, module, *args = sys.argv[1:]
    for mode in modes.split("+"):  # floor+cpu: the floor's server, profiled
        {"memory": memory, "cpu": cpu, "floor": floor}[mode](Path(folder))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
