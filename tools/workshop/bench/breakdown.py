"""Where a server's memory per connection and CPU per delivery go.

Each allocation (tracemalloc) and each CPU sample (probe.py) is put down to the
innermost frame that is not Python's standard library: the code that asked for it.
Time in asyncio.wait called by Channels' consumer loop counts as Channels'; a
transport.write from uvicorn counts as uvicorn's.
"""

import json
import sysconfig
import tracemalloc
from collections import Counter
from pathlib import Path

STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()
NO_FRAME = "(no Python frame)"
EVENT_LOOP = "event loop"
# The frames that run the event loop. What happens with nothing but these above it is
# the loop's own work (with uvloop: its C code and the system calls that read and
# write the sockets) and the transports it makes for new connections.
LOOP_FILES = ("asyncio/runners.py", "asyncio/base_events.py", "uvicorn/_compat.py")
PROBE = "workshop/bench/probe.py"


def origin(filename: str, step_dir: Path | None) -> tuple[str, bool]:
    """(component, is it the standard library?) of a source file."""
    if filename.startswith("<frozen "):
        return filename.removeprefix("<frozen ").rstrip(">").split(".")[0], True
    if filename.startswith("<"):
        return NO_FRAME, True
    path = Path(filename)
    if "site-packages" in path.parts:
        return path.parts[path.parts.index("site-packages") + 1].split(".")[0], False
    if step_dir and path.is_relative_to(step_dir):
        return f"{step_dir.name}/{path.relative_to(step_dir).parts[0]}", False
    if path.is_relative_to(STDLIB):
        return path.relative_to(STDLIB).parts[0].removesuffix(".py"), True
    return path.name, False


def attribute(frames: list[tuple[str, str]], step_dir: Path | None):
    """(component, site) for frames (file, function or line), innermost first."""
    for filename, where in frames:
        if filename.endswith(LOOP_FILES):
            return EVENT_LOOP, EVENT_LOOP
        component, stdlib = origin(filename, step_dir)
        if not stdlib:
            return component, f"{short(filename)}:{where}"
    if not frames:
        return NO_FRAME, NO_FRAME
    filename, where = frames[0]
    return origin(filename, step_dir)[0], f"{short(filename)}:{where}"


def short(filename: str) -> str:
    """A file name without the machine's own folders."""
    path = Path(filename)
    if "site-packages" in path.parts:
        return "/".join(path.parts[path.parts.index("site-packages") + 1 :])
    if path.is_relative_to(STDLIB):
        return str(path.relative_to(STDLIB))
    return "/".join(path.parts[-2:])


def ranked(counter: Counter, top: int, scale: float | None = None) -> list[dict]:
    """The top entries with their share of the total (and amount × scale)."""
    total = sum(counter.values())
    found = []
    for what, amount in counter.most_common(top):
        entry = {"what": what, "share": amount / total if total else 0.0}
        if scale is not None:
            entry["amount"] = amount * scale
        found.append(entry)
    return found


def memory(snapshot: Path, connections: int, step_dir, top=12) -> dict:
    """KiB per connection that is still allocated, by component and by site."""
    components, sites = Counter(), Counter()
    for statistic in tracemalloc.Snapshot.load(snapshot).statistics("traceback"):
        frames = [(f.filename, str(f.lineno)) for f in reversed(statistic.traceback)]
        component, site = attribute(frames, step_dir)
        components[component] += statistic.size
        sites[site] += statistic.size
    per_kib = 1 / connections / 1024
    return {
        "connections": connections,
        "traced_kib_per_connection": sum(components.values()) * per_kib,
        "components": ranked(components, len(components), per_kib),
        "sites": ranked(sites, top, per_kib),
    }


def cpu(profile: Path, step_dir, top=15) -> dict:
    """Shares of the sampled CPU time (every thread's), by component and function;
    the sampler's own time is left out and counted apart."""
    data = json.loads(profile.read_text())
    components, functions, sampler = Counter(), Counter(), 0.0
    for entry in data["stacks"]:
        frames = [tuple(frame.rsplit(":", 1)) for frame in entry["stack"]]
        if frames[0][0].endswith(PROBE):
            sampler += entry["seconds"]
            continue
        component, function = attribute(frames, step_dir)
        components[component] += entry["seconds"]
        functions[function] += entry["seconds"]
    return {
        "seconds": sum(components.values()),
        "sampler_seconds": sampler,
        "components": ranked(components, len(components)),
        "functions": ranked(functions, top),
    }
