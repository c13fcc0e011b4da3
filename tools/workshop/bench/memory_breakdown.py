"""Memory per idle connection, and what it is made of.

The breakdown is Python's own account (tracemalloc, through the probe): what was
allocated while the connections joined and is still there once they are idle, by
the code that allocated it. One user's room is measured apart: RSS per idle
connection when every socket is the same user's, so that the presence list that
each join sends to the whole room holds one name.
"""

import asyncio
import shutil
import signal
import time

from workshop.bench import breakdown
from workshop.bench.harness import Bench
from workshop.bench.load import drop, in_room, open_clients, settle
from workshop.bench.server import Idle, Server, rss_bytes, wait_for_file
from workshop.bench.variants import Variant

# Connections that join before the memory is counted: what only the first ones cost
# (imports, caches) is left out.
WARM_UP = 10
# The last step caps the sockets one user may have open: not here, where one user
# opens them all.
ONE_USER_MAY_OPEN_THEM_ALL = {"CHAT_MAX_SOCKETS_PER_USER": "1000000"}


def measure(bench: Bench, variant: Variant, clients: int) -> None:
    """The breakdown of `clients` connections' memory, every socket one user's (so
    that the room's presence list is left out too)."""
    folder = bench.scratch / f"memory-{variant.key}"
    folder.mkdir()
    env = {**bench.env_for(variant), **ONE_USER_MAY_OPEN_THEM_ALL}
    cookies = bench.cookies_for(variant, 1) * (WARM_UP + clients)

    async def join_and_snapshot(server):
        url, origin, idle = server.url("memory"), server.origin, Idle(server.pid)
        first = await open_clients(
            url, WARM_UP, variant.protocol, origin, cookies[:WARM_UP]
        )
        readers = [asyncio.create_task(c.read()) for c in first]
        room = []
        try:
            await settle(first, idle)
            server.signal(signal.SIGUSR1)  # tracing starts
            room = await open_clients(
                url, clients, variant.protocol, origin, cookies[WARM_UP:]
            )
            readers += [asyncio.create_task(c.read()) for c in room]
            await settle(first + room, idle)
            server.signal(signal.SIGUSR1)  # what is left is written
            await asyncio.to_thread(wait_for_file, folder / "snapshot.pickle")
        finally:
            for reader in readers:
                reader.cancel()
            drop([c.socket for c in first + room])

    with Server(bench, variant, env, probe=("memory", str(folder))) as server:
        asyncio.run(join_and_snapshot(server))
    bench.breakdowns.setdefault("memory", {})[variant.key] = breakdown.memory(
        folder / "snapshot.pickle",
        clients,
        variant.step.path if variant.step else None,
    )
    shutil.rmtree(folder)  # the snapshots are large; the figures are kept


def measure_one_user(bench: Bench, variant: Variant, clients: int) -> None:
    """RSS per idle connection when every socket is one user's."""
    env = {**bench.env_for(variant), **ONE_USER_MAY_OPEN_THEM_ALL}
    with Server(bench, variant, env) as server:
        time.sleep(0.3)
        before = rss_bytes(server.pid)

        async def measure_rss(_):
            return rss_bytes(server.pid)

        after = asyncio.run(
            in_room(
                server.url("one-user"),
                clients,
                variant.protocol,
                server.origin,
                bench.cookies_for(variant, 1) * clients,
                measure_rss,
                Idle(server.pid),
            )
        )
    bench.breakdowns["one_user"] = {
        "variant": variant.key,
        "clients": clients,
        "rss_kib_per_idle_connection": (after - before) / clients / 1024,
    }
