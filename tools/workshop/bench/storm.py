"""The reconnect storm, measured: the app server of a full room is killed and
started again while messages keep coming through another one (storm_clients.py has
the clients). How soon is everyone back and caught up, was anything lost, and what
did the restarted server spend on it?"""

import asyncio
import json
import time

from workshop.bench.harness import Bench, manage_shell
from workshop.bench.server import Idle, Server, cpu_seconds
from workshop.bench.storm_clients import Backoff, run_storm
from workshop.bench.variants import Variant

# The numbers of the messages the database stored in a room.
STORED = """
import json
from chat.models import Message
numbers = Message.objects.filter(room__name=ROOM).values_list("number", flat=True)
print(json.dumps(list(numbers)))
"""


def measure(bench: Bench, variant: Variant, round_: int, backoff: Backoff) -> None:
    plan = bench.plan.storm
    row = {
        "variant": variant.key,
        "scenario": "storm",
        "round": round_,
        "clients": plan.listeners,
        "senders": plan.senders,
        "rate": plan.rate,
    }

    def run():
        env = bench.env_for(variant)
        room = f"storm{round_}"
        servers = {"listeners": Server(bench, variant, env).start()}
        try:
            servers["senders"] = Server(bench, variant, env).start()
            port = servers["listeners"].port

            def restart():
                servers["listeners"].kill()
                servers["listeners"] = Server(bench, variant, env, port=port).start()
                return {
                    "at": time.monotonic(),
                    "cpu": cpu_seconds(servers["listeners"].pid),
                }

            figures, listeners = asyncio.run(
                run_storm(
                    servers["listeners"].url(room),
                    servers["senders"].url(room),
                    servers["listeners"].origin,
                    bench.cookies_for(variant, plan.listeners),
                    bench.cookies_for(variant, plan.senders, offset=plan.listeners),
                    plan.rate,
                    plan.warmup,
                    plan.limit,
                    backoff,
                    restart,
                    lambda: cpu_seconds(servers["listeners"].pid),
                    Idle(servers["listeners"].pid),
                )
            )
        finally:
            for server in servers.values():
                server.kill()
        stored = set(
            json.loads(
                manage_shell(variant.step.path, env, STORED.replace("ROOM", repr(room)))
            )
        )
        missing = [len(stored - listener.arrivals) for listener in listeners]
        return {
            **figures,
            "stored": len(stored),
            "lost": sum(missing),
            "listeners_with_loss": sum(1 for n in missing if n),
        }

    bench.attempt(row, run)
