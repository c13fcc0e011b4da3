"""Where the last step's CPU goes: two profiles of one server (through the probe),
while the room fills (every client logs in and joins), then while messages go out
at full speed; each with the CPU time it took, per connection and per delivery."""

import asyncio
import signal

from workshop.bench import breakdown
from workshop.bench.harness import Bench
from workshop.bench.load import run_room
from workshop.bench.server import Idle, Server, cpu_seconds, wait_for_file
from workshop.bench.variants import Variant


def measure(bench: Bench, variant: Variant, clients: int) -> None:
    folder = bench.scratch / f"cpu-{variant.key}"
    folder.mkdir()
    env = bench.env_for(variant, unlimited=True)
    senders = min(bench.plan.senders, clients)
    # Three times the deliveries of a measured run: more samples.
    per_sender = 3 * bench.plan.per_sender(clients)
    with Server(bench, variant, env, probe=("cpu", str(folder))) as server:
        marks = {"cpu": cpu_seconds(server.pid)}
        server.signal(signal.SIGUSR2)

        def on_ready():
            server.signal(signal.SIGUSR2)
            marks["joining"] = cpu_seconds(server.pid) - marks["cpu"]
            # Two signals at once could arrive as one: one profile at a time.
            wait_for_file(folder / "profile-1.json")
            server.signal(signal.SIGUSR2)
            marks["cpu"] = cpu_seconds(server.pid)

        def on_done():
            marks["messages"] = cpu_seconds(server.pid) - marks["cpu"]
            server.signal(signal.SIGUSR2)

        result = asyncio.run(
            run_room(
                server.url("profile"),
                clients,
                senders,
                per_sender,
                variant.protocol,
                server.origin,
                bench.cookies_for(variant, clients),
                on_ready=on_ready,
                on_done=on_done,
                idle=Idle(server.pid),
            )
        )
        wait_for_file(folder / "profile-2.json")
    step_dir = variant.step.path if variant.step else None
    joining = breakdown.cpu(folder / "profile-1.json", step_dir)
    joining["cpu_ms_per_connection"] = marks["joining"] / clients * 1e3
    messages = breakdown.cpu(folder / "profile-2.json", step_dir)
    messages.update(
        deliveries=result.received,
        delivery_ratio=result.ratio,
        cpu_us_per_delivery=marks["messages"] / result.received * 1e6
        if result.received
        else None,
    )
    bench.breakdowns["cpu"] = {
        "variant": variant.key,
        "clients": clients,
        "joining": joining,
        "messages": messages,
    }
